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

#[cfg(test)]
mod tests {
    use super::*;

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
