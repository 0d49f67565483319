//! Great-circle distances between protocol locations (micro-degrees), spec §4.18.

/// Spec §4.18: the Earth radius used for search distances.
const EARTH_RADIUS_M: f64 = 6_371_000.0;

fn radians(micro_degrees: i32) -> f64 {
    (f64::from(micro_degrees) / 1_000_000.0).to_radians()
}

/// Haversine distance in metres between two points given in micro-degrees.
pub fn distance_m(lat1: i32, lon1: i32, lat2: i32, lon2: i32) -> f64 {
    let (phi1, phi2) = (radians(lat1), radians(lat2));
    let d_phi = phi2 - phi1;
    let d_lambda = radians(lon2) - radians(lon1);
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    // Clamping guards against rounding just above 1 for antipodal points.
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// Micro-degrees in a full turn of longitude.
const TURN: i64 = 360_000_000;
/// Slack added to each side of a box, in micro-degrees, so rounding never leaves out a point the
/// exact distance would keep (about a metre of latitude).
const SLACK: f64 = 10.0;

/// `value` (at most a few hundred million) rounded up to a whole number.
#[expect(
    clippy::cast_possible_truncation,
    reason = "callers pass angles in micro-degrees, far inside i64"
)]
fn whole(value: f64) -> i64 {
    value.ceil() as i64
}

/// A latitude/longitude box around a circle on the sphere: every point within the radius lies
/// inside it, so comparing integers can skip the exact distance for most points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bounds {
    lat_min: i64,
    lat_max: i64,
    lon_centre: i64,
    /// Half the box's width in longitude; `None` when the circle reaches a pole or wraps.
    lon_half: Option<i64>,
}

impl Bounds {
    /// The box around the circle of `radius_m` metres about (`lat`, `lon`) in micro-degrees.
    pub(crate) fn around(lat: i32, lon: i32, radius_m: u32) -> Bounds {
        // The circle's angular radius; every point in it is at most this far in latitude.
        let arc = f64::from(radius_m) / EARTH_RADIUS_M * (1.0 + 1e-9);
        let lat_half = arc.to_degrees() * 1e6 + SLACK;
        let phi = radians(lat);
        // Longitude spread, away from the poles: asin(sin(arc) / cos(lat)) (the circle's
        // tangent meridians).
        let spread = arc.sin() / phi.cos();
        let lon_half = (phi.abs() + arc < std::f64::consts::FRAC_PI_2 && spread < 0.999)
            .then(|| spread.asin().to_degrees() * 1e6 * (1.0 + 1e-9) + SLACK)
            .filter(|half| *half < 180e6);
        Bounds {
            lat_min: i64::from(lat) - whole(lat_half),
            lat_max: i64::from(lat) + whole(lat_half),
            lon_centre: i64::from(lon),
            lon_half: lon_half.map(whole),
        }
    }

    /// Whether (`lat`, `lon`) lies in the box.
    pub(crate) fn contains(&self, lat: i32, lon: i32) -> bool {
        let lat = i64::from(lat);
        if lat < self.lat_min || lat > self.lat_max {
            return false;
        }
        self.lon_half.is_none_or(|half| {
            // The shorter way round, across the antimeridian when that is shorter.
            let diff = (i64::from(lon) - self.lon_centre).rem_euclid(TURN);
            diff.min(TURN - diff) <= half
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_hold_every_point_the_exact_distance_keeps() {
        use proptest::prelude::*;
        proptest!(ProptestConfig::with_cases(50_000), |(
            lat in -90_000_000..=90_000_000i64,
            lon in -179_999_999..=180_000_000i64,
            radius in prop_oneof![1u32..1_000, 1_000u32..100_000, 100_000u32..20_100_000],
            // Offsets of up to three radii (about 9 micro-degrees of latitude per metre),
            // wider in longitude near the poles, so many points fall near the circle's edge.
            north in -3_000..=3_000i64,
            east in -3_000..=3_000i64,
            widen in 1..=50i64,
        )| {
            let scale = i64::from(radius) * 9;
            let other_lat = (lat + north * scale / 1_000).clamp(-90_000_000, 90_000_000);
            let other_lon = (lon + east * scale * widen / 1_000 + 180_000_000)
                .rem_euclid(TURN) - 180_000_000;
            let centre = (i32::try_from(lat).unwrap_or(0), i32::try_from(lon).unwrap_or(0));
            let other = (
                i32::try_from(other_lat).unwrap_or(0),
                i32::try_from(other_lon).unwrap_or(0),
            );
            let bounds = Bounds::around(centre.0, centre.1, radius);
            if distance_m(centre.0, centre.1, other.0, other.1) <= f64::from(radius) {
                prop_assert!(bounds.contains(other.0, other.1), "{bounds:?} {other:?}");
            }
        });
    }

    #[test]
    fn boxes_leave_out_what_is_clearly_far() {
        let bounds = Bounds::around(47_497_900, 19_040_200, 100_000);
        assert!(bounds.contains(47_497_900, 19_040_200));
        assert!(!bounds.contains(48_497_900 + 100_000, 19_040_200));
        assert!(!bounds.contains(47_497_900, 21_040_200));
        // Across the antimeridian.
        let bounds = Bounds::around(0, 179_990_000, 5_000);
        assert!(bounds.contains(0, -179_990_000));
        assert!(!bounds.contains(0, 0));
    }

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    #[test]
    fn mumbai_profiles_are_about_111_m_apart() {
        let d = distance_m(18_961_000, 72_820_000, 18_960_000, 72_820_000);
        assert!(close(d, 111.2, 0.5), "{d}");
    }

    #[test]
    fn across_the_antimeridian_the_short_way_round() {
        // 179.9°E to 179.9°W on the equator: 0.2° of arc, not 359.8°.
        let d = distance_m(0, 179_900_000, 0, -179_900_000);
        assert!(close(d, 22_239.0, 5.0), "{d}");
    }

    #[test]
    fn at_the_poles_longitude_does_not_matter() {
        assert!(distance_m(90_000_000, 0, 90_000_000, 180_000_000) < 0.001);
        let d = distance_m(-90_000_000, 10_000_000, -89_000_000, -170_000_000);
        assert!(close(d, 111_195.0, 5.0), "{d}");
    }

    #[test]
    fn antipodes_are_half_the_circumference() {
        let d = distance_m(0, 0, 0, 180_000_000);
        assert!(close(d, std::f64::consts::PI * EARTH_RADIUS_M, 1.0), "{d}");
        let d = distance_m(90_000_000, 0, -90_000_000, 0);
        assert!(close(d, std::f64::consts::PI * EARTH_RADIUS_M, 1.0), "{d}");
    }
}
