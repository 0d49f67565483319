//! Waiting for a stand-in (LOC, CAN) to reach a state, under a real or a paused clock.

use std::fmt::Debug;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How often a wait looks again without being notified.
const TICK: Duration = Duration::from_millis(100);

/// Waits until `done` holds for `read()`, failing the test after `limit`; `changed` is notified
/// whenever the state changes.
///
/// It wakes at least every [`TICK`]: a paused test clock jumps to the next timer whenever the
/// runtime waits for I/O, so one long timeout here could pass while a message is on its way
/// between the server and the stand-in.
pub async fn wait_for_state<S: Debug>(
    changed: &Notify,
    limit: Duration,
    what: &str,
    read: impl Fn() -> S,
    done: impl Fn(&S) -> bool,
) -> S {
    let deadline = Instant::now() + limit;
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let state = read();
        if done(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in time; state: {state:?}"
        );
        let _ = tokio::time::timeout(TICK, notified).await;
    }
}
