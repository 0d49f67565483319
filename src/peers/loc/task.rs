//! The LOC task: one plain TCP connection at a time, driven by a [`Link`], rebuilt from scratch
//! after any failure once `loc.reconnect_secs` have passed.
//!
//! Every wait has a timeout except the idle wait for notifications, which the periodic refresh
//! bounds instead. Frames are read header first and never beyond one frame. A LOC that stays
//! down costs one warning; repeats are logged at debug.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::Sender;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::codec::LocError;
use super::link::{DEREGISTER_TIMEOUT, Link, Output};
use super::{LocEvent, LocSettings};
use crate::config::Location;
use crate::search::geo::distance_m;
use crate::wire::frame::{self, HEADER_LEN};
use crate::wire::loc::GpsLocation;

/// Longest wait for the TCP connection to LOC.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for LOC to take one frame.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest time a frame may take to arrive once its first byte did.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// A configured `[location]` farther than this from LOC's gets a warning.
const LOCATION_MISMATCH_M: f64 = 10_000.0;

/// Keeps the server attached to LOC until `shutdown`, reporting to `events`; deregisters on the
/// way out. Ends early only if the receiver of `events` is dropped.
pub(crate) async fn run(
    settings: LocSettings,
    events: Sender<LocEvent>,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("loc", address = %settings.address);
    async move {
        let mut health = Health::default();
        loop {
            match converse(&settings, &events, &shutdown, &mut health).await {
                Ok(()) => return,
                Err(error) => health.failed(&error, settings.reconnect),
            }
            if health.take_attached() && !deliver(&events, &shutdown, LocEvent::Detached).await {
                return;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sleep(settings.reconnect) => {}
            }
        }
    }
    .instrument(span)
    .await;
}

/// One connection, from connect to failure (`Err`) or to a stop (`Ok`).
async fn converse(
    settings: &LocSettings,
    events: &Sender<LocEvent>,
    shutdown: &CancellationToken,
    health: &mut Health,
) -> Result<(), LocError> {
    let socket = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        connected = timeout(CONNECT_TIMEOUT, TcpStream::connect(settings.address)) => {
            connected.map_err(|_| LocError::Timeout)??
        }
    };
    // Frames are written whole; Nagle would only delay the acks.
    let _ = socket.set_nodelay(true);
    let (mut input, mut output) = socket.into_split();
    let (mut link, register) = Link::new(settings, Instant::now());
    send(&mut output, &register).await?;
    let mut reader = Reader::default();
    loop {
        let step = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            body = reader.frame(&mut input) => link.on_frame(Instant::now(), &body?)?,
            () = sleep_until_some(link.next_wakeup()) => Output {
                send: link.on_timer(Instant::now())?,
                ..Output::default()
            },
        };
        if !carry_out(step, settings, &mut output, events, shutdown, health).await? {
            break;
        }
    }
    farewell(link, reader, input, output).await;
    Ok(())
}

/// Does what one step asked for; false when the task must stop.
async fn carry_out(
    step: Output,
    settings: &LocSettings,
    output: &mut OwnedWriteHalf,
    events: &Sender<LocEvent>,
    shutdown: &CancellationToken,
    health: &mut Health,
) -> Result<bool, LocError> {
    if let Some(location) = step.location {
        health.located(location, settings.configured_location);
    }
    if let Some(frame) = &step.send {
        send(output, frame).await?;
    }
    if step.attached
        && let Some(LocEvent::Attached { nodes }) = step.events.first()
    {
        health.attached(nodes.len());
    }
    for event in step.events {
        if !deliver(events, shutdown, event).await {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Deregisters when LOC knows us, waiting [`DEREGISTER_TIMEOUT`] at most; the socket closes
/// when the halves are dropped.
async fn farewell(
    mut link: Link,
    mut reader: Reader,
    mut input: OwnedReadHalf,
    mut output: OwnedWriteHalf,
) {
    if !link.is_registered() {
        return;
    }
    let deregister = link.deregister(Instant::now());
    let exchange = async {
        send(&mut output, &deregister).await?;
        while link.is_waiting() {
            let body = reader.frame(&mut input).await?;
            link.on_frame(Instant::now(), &body)?;
        }
        Ok::<(), LocError>(())
    };
    match timeout(DEREGISTER_TIMEOUT, exchange).await {
        Ok(Ok(())) => tracing::debug!("deregistered from LOC"),
        Ok(Err(error)) => tracing::debug!(%error, "deregistering from LOC failed"),
        Err(_) => tracing::debug!("LOC did not confirm the deregistration in time"),
    }
}

/// Hands an event to the consumer, waiting for room; false on shutdown or without a consumer.
async fn deliver(events: &Sender<LocEvent>, shutdown: &CancellationToken, event: LocEvent) -> bool {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => false,
        sent = events.send(event) => {
            if sent.is_err() {
                tracing::debug!("nobody takes LOC events any more; stopping");
            }
            sent.is_ok()
        }
    }
}

async fn send(output: &mut OwnedWriteHalf, frame: &[u8]) -> Result<(), LocError> {
    timeout(WRITE_TIMEOUT, output.write_all(frame))
        .await
        .map_err(|_| LocError::Timeout)??;
    Ok(())
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads whole frames one `read` at a time, so that it can wait in a `select!` without losing
/// bytes: the header first, the body only once [`frame::body_len`] accepted it (≤ 1 MiB).
#[derive(Default)]
struct Reader {
    header: [u8; HEADER_LEN],
    header_filled: usize,
    body: Vec<u8>,
    body_filled: usize,
    /// When the first byte of the frame in progress arrived.
    started: Option<Instant>,
}

impl Reader {
    /// The next frame body. Cancel-safe: state changes only after the one await. Once a frame
    /// has begun, the rest must arrive within [`FRAME_TIMEOUT`].
    async fn frame<R: AsyncRead + Unpin>(&mut self, input: &mut R) -> Result<Vec<u8>, LocError> {
        loop {
            let buffer = if self.header_filled < HEADER_LEN {
                &mut self.header[self.header_filled..]
            } else {
                &mut self.body[self.body_filled..]
            };
            let n = match self.started {
                None => input.read(buffer).await?,
                Some(started) => timeout_at(started + FRAME_TIMEOUT, input.read(buffer))
                    .await
                    .map_err(|_| LocError::Timeout)??,
            };
            if n == 0 {
                return Err(LocError::Closed);
            }
            self.started.get_or_insert_with(Instant::now);
            if self.header_filled < HEADER_LEN {
                self.header_filled += n;
                if self.header_filled == HEADER_LEN {
                    self.body = vec![0; frame::body_len(&self.header)?];
                }
            } else {
                self.body_filled += n;
            }
            if self.header_filled == HEADER_LEN && self.body_filled == self.body.len() {
                self.header_filled = 0;
                self.body_filled = 0;
                self.started = None;
                return Ok(std::mem::take(&mut self.body));
            }
        }
    }
}

/// What has been logged, so that each change of state costs one line.
#[derive(Debug, Default)]
struct Health {
    /// A failure was logged since the last attach.
    failing: bool,
    /// Attached since the last failure: the next failure sends `Detached`.
    attached: bool,
    /// The last location LOC reported.
    location: Option<GpsLocation>,
}

impl Health {
    fn failed(&mut self, error: &LocError, reconnect: Duration) {
        if self.failing {
            tracing::debug!(%error, "LOC still unavailable");
        } else {
            tracing::warn!(%error, retry_secs = reconnect.as_secs(), "LOC unavailable; retrying");
        }
        self.failing = true;
    }

    fn attached(&mut self, neighbors: usize) {
        tracing::info!(neighbors, "attached to LOC");
        self.failing = false;
        self.attached = true;
    }

    fn take_attached(&mut self) -> bool {
        std::mem::take(&mut self.attached)
    }

    fn located(&mut self, location: GpsLocation, configured: Location) {
        if self.location == Some(location) {
            return;
        }
        self.location = Some(location);
        let (latitude, longitude) = (degrees(location.latitude), degrees(location.longitude));
        tracing::info!(latitude, longitude, "LOC node location");
        if let Some(metres) = mismatch_m(configured, location) {
            tracing::warn!(
                km = (metres / 1000.0).round(),
                "[location] is more than 10 km from the location LOC reports"
            );
        }
    }
}

/// How far a configured `[location]` is from LOC's, when set (not 0, 0) and over 10 km.
fn mismatch_m(configured: Location, reported: GpsLocation) -> Option<f64> {
    if configured == Location::default() {
        return None;
    }
    let metres = distance_m(
        configured.latitude,
        configured.longitude,
        reported.latitude,
        reported.longitude,
    );
    (metres > LOCATION_MISMATCH_M).then_some(metres)
}

fn degrees(micro_degrees: i32) -> f64 {
    f64::from(micro_degrees) / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_across_reads() {
        let (mut loc, mut ours) = tokio::io::duplex(3);
        tokio::spawn(async move {
            let _ = loc
                .write_all(&[0x0D, 2, 0, 0, 0, 0xAA, 0xBB, 0x0D, 0, 0, 0, 0])
                .await;
        });
        let mut reader = Reader::default();
        assert_eq!(reader.frame(&mut ours).await.expect("frame"), [0xAA, 0xBB]);
        assert!(reader.started.is_none());
        assert_eq!(
            reader.frame(&mut ours).await.expect("empty frame"),
            Vec::<u8>::new()
        );
        assert!(matches!(
            reader.frame(&mut ours).await,
            Err(LocError::Closed)
        ));
    }

    #[tokio::test]
    async fn an_oversized_header_fails_before_any_body() {
        let (mut loc, mut ours) = tokio::io::duplex(64);
        loc.write_all(&[0x0D, 0x1C, 0x00, 0x10, 0x00])
            .await
            .expect("write");
        let mut reader = Reader::default();
        assert!(matches!(
            reader.frame(&mut ours).await,
            Err(LocError::Frame(_))
        ));
        assert!(reader.body.capacity() == 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_stalled_midway_times_out() {
        let (mut loc, mut ours) = tokio::io::duplex(64);
        loc.write_all(&[0x0D, 9, 0]).await.expect("write");
        let started = Instant::now();
        let result = Reader::default().frame(&mut ours).await;
        assert!(matches!(result, Err(LocError::Timeout)), "{result:?}");
        assert_eq!(Instant::now(), started + FRAME_TIMEOUT);
        // An idle connection has no deadline.
        let mut idle = Reader::default();
        assert!(
            timeout(FRAME_TIMEOUT * 10, idle.frame(&mut ours))
                .await
                .is_err()
        );
    }

    #[test]
    fn location_mismatch_over_10_km_only_when_configured() {
        let vienna = GpsLocation {
            latitude: 48_208_176,
            longitude: 16_373_819,
        };
        let near = Location {
            latitude: 48_208_200,
            longitude: 16_373_800,
        };
        assert_eq!(mismatch_m(near, vienna), None);
        assert_eq!(mismatch_m(Location::default(), vienna), None);
        let budapest = Location {
            latitude: 47_497_900,
            longitude: 19_040_200,
        };
        let far = mismatch_m(budapest, vienna).expect("far");
        assert!((200_000.0..230_000.0).contains(&far), "{far}");
    }
}
