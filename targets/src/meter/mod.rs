//! *Measured* energy: the [`EnergyMeter`] trait and the meters behind it.
//!
//! A meter is opened once, then measures windows: [`EnergyMeter::start`] before an inference,
//! [`EnergyMeter::sample`] as often as the caller likes during it (between operators, for
//! instance), [`EnergyMeter::stop`] after it. Times are nanoseconds from the caller's clock, so the
//! meters need no clock of their own and stay `no_std`.
//!
//! - [`rapl::Rapl`] (feature `std`): the Linux powercap interface to Intel/AMD RAPL energy
//!   counters, package domain. The hardware counts energy itself; samples only guard against
//!   the counter wrapping more than once.
//! - [`ina::Ina219`] and [`ina::Ina226`] (feature `ina`, `no_std`): TI current/power monitors on a
//!   shunt in the supply rail, read over `embedded-hal` 1.0 I2C. They report power, so the meter
//!   integrates power over time (trapezoidal rule, [`PowerIntegrator`]): sample often enough to
//!   follow the load.
//!
//! Everything a meter returns is labelled [`MeasuredEnergy::LABEL`]; compare it with the
//! estimates of [`crate::EnergyEstimate`] (labelled "estimated").

#[cfg(feature = "ina")]
pub mod ina;
#[cfg(feature = "std")]
pub mod rapl;

/// Energy measured over one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeasuredEnergy {
    /// Energy in the window, in µJ.
    pub energy_uj: f64,
    /// Length of the window, in ns (from the caller's clock).
    pub duration_ns: u64,
    /// Readings taken, including the ones at start and stop.
    pub samples: u32,
}

impl MeasuredEnergy {
    /// How results of this type must be labelled in reports.
    pub const LABEL: &'static str = "measured";

    /// Mean power over the window, in µW (0 for an empty window).
    pub fn mean_power_uw(&self) -> f64 {
        if self.duration_ns == 0 {
            0.0
        } else {
            self.energy_uj / (self.duration_ns as f64 * 1e-9)
        }
    }
}

/// A source of measured energy over a time window.
pub trait EnergyMeter {
    /// What can go wrong reading the meter.
    type Error;

    /// What the meter measures, in words for a report (which rail or domain, what it includes).
    fn measures(&self) -> &'static str;

    /// Opens a window at `now_ns`.
    fn start(&mut self, now_ns: u64) -> Result<(), Self::Error>;

    /// Takes a reading inside the window. Power meters integrate between readings, so more
    /// readings follow the load more closely; energy counters only need one per wrap period.
    fn sample(&mut self, now_ns: u64) -> Result<(), Self::Error>;

    /// Closes the window at `now_ns` and returns the energy in it.
    fn stop(&mut self, now_ns: u64) -> Result<MeasuredEnergy, Self::Error>;
}

/// Integrates power readings over time with the trapezoidal rule.
///
/// µW × ns = 10⁻¹⁵ J = 10⁻⁹ µJ.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PowerIntegrator {
    start_ns: u64,
    last: Option<(u64, f64)>,
    energy_uj: f64,
    samples: u32,
}

impl PowerIntegrator {
    /// An integrator with no window open.
    pub const fn new() -> Self {
        PowerIntegrator {
            start_ns: 0,
            last: None,
            energy_uj: 0.0,
            samples: 0,
        }
    }

    /// Opens a window with a first reading of `power_uw` at `now_ns`.
    pub fn start(&mut self, now_ns: u64, power_uw: f64) {
        *self = PowerIntegrator {
            start_ns: now_ns,
            last: Some((now_ns, power_uw)),
            energy_uj: 0.0,
            samples: 1,
        };
    }

    /// Adds a reading; the interval since the previous one counts with their mean power. A
    /// reading before any [`PowerIntegrator::start`] opens the window; a time that goes backwards
    /// adds nothing.
    pub fn add(&mut self, now_ns: u64, power_uw: f64) {
        match self.last {
            None => self.start(now_ns, power_uw),
            Some((t, p)) => {
                let dt_ns = now_ns.saturating_sub(t) as f64;
                self.energy_uj += 0.5 * (p + power_uw) * dt_ns * 1e-9;
                self.last = Some((now_ns.max(t), power_uw));
                self.samples = self.samples.saturating_add(1);
            }
        }
    }

    /// Adds a last reading and returns the window's energy; the integrator is then reset.
    pub fn finish(&mut self, now_ns: u64, power_uw: f64) -> MeasuredEnergy {
        self.add(now_ns, power_uw);
        let m = MeasuredEnergy {
            energy_uj: self.energy_uj,
            duration_ns: now_ns.saturating_sub(self.start_ns),
            samples: self.samples,
        };
        *self = PowerIntegrator::new();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_power_integrates_exactly() {
        // 1 W = 10⁶ µW for 2 ms = 2 mJ = 2000 µJ.
        let mut i = PowerIntegrator::new();
        i.start(1_000, 1e6);
        i.add(1_000_000, 1e6);
        let m = i.finish(2_001_000, 1e6);
        assert!((m.energy_uj - 2000.0).abs() < 1e-9, "{m:?}");
        assert_eq!(m.duration_ns, 2_000_000);
        assert_eq!(m.samples, 3);
        assert!((m.mean_power_uw() - 1e6).abs() < 1e-6);
    }

    #[test]
    fn a_ramp_is_integrated_by_trapezoids() {
        // Power rising linearly 0 → 100 µW over 1 s: 50 µJ, exact for the trapezoidal rule.
        let mut i = PowerIntegrator::new();
        i.start(0, 0.0);
        for k in 1..10u64 {
            i.add(k * 100_000_000, k as f64 * 10.0);
        }
        let m = i.finish(1_000_000_000, 100.0);
        assert!((m.energy_uj - 50.0).abs() < 1e-9, "{m:?}");
        assert_eq!(m.samples, 11);
    }

    #[test]
    fn odd_inputs_do_not_break_it() {
        let mut i = PowerIntegrator::new();
        // No start: the first reading opens the window.
        i.add(500, 10.0);
        // Time going backwards adds nothing.
        i.add(400, 10.0);
        let m = i.finish(500, 10.0);
        assert_eq!(m.energy_uj, 0.0);
        assert_eq!(m.duration_ns, 0);
        assert_eq!(m.mean_power_uw(), 0.0);
        // Reset after finish.
        assert_eq!(i, PowerIntegrator::new());
    }
}
