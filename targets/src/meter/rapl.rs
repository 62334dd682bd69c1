//! Linux RAPL (Running Average Power Limit) energy counters through the powercap sysfs interface.
//!
//! `/sys/class/powercap/intel-rapl:0/` is the package domain of socket 0 (also on AMD Zen, whose
//! RAPL the same driver exposes). `energy_uj` is a free-running counter of µJ that wraps to zero
//! after `max_energy_range_uj`; `name` is `package-0`. The package domain includes every core,
//! the caches and the uncore — and everything else the machine runs meanwhile, so on a shared
//! machine a window's energy is an upper bound for the inference.
//!
//! Since the Platypus fix (CVE-2020-8694, Linux 5.10 and stable backports), `energy_uj` is
//! readable only by root; [`Rapl::open`] reads it once so that a permission problem shows up
//! there, with the path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::prelude::rust_2021::*;

use super::{EnergyMeter, MeasuredEnergy};

/// The package domain of socket 0.
pub const PACKAGE_0: &str = "/sys/class/powercap/intel-rapl:0";

/// What went wrong reading a RAPL domain.
#[derive(Debug)]
pub enum RaplError {
    /// A sysfs file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A sysfs file did not hold what it should.
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        text: String,
    },
    /// The domain is not a package domain (its `name` does not start with `package`).
    NotPackage {
        /// The domain directory.
        dir: PathBuf,
        /// Its `name`.
        name: String,
    },
}

impl fmt::Display for RaplError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RaplError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())?;
                if source.kind() == std::io::ErrorKind::PermissionDenied {
                    f.write_str(
                        " (RAPL energy counters are readable only by root since the \
                         CVE-2020-8694 fix; run as root or make energy_uj readable)",
                    )?;
                } else if source.kind() == std::io::ErrorKind::NotFound {
                    f.write_str(" (no RAPL powercap domain here: not Linux, no intel_rapl driver, or a VM that hides it)")?;
                }
                Ok(())
            }
            RaplError::Parse { path, text } => {
                write!(f, "{} holds {text:?}, not a number", path.display())
            }
            RaplError::NotPackage { dir, name } => write!(
                f,
                "{} is the RAPL domain {name:?}, not a package domain",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for RaplError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RaplError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One RAPL powercap domain, read as an [`EnergyMeter`].
#[derive(Debug)]
pub struct Rapl {
    dir: PathBuf,
    name: String,
    max_range_uj: u64,
    last_uj: u64,
    energy_uj: u64,
    start_ns: u64,
    samples: u32,
}

fn read_text(path: &Path) -> Result<String, RaplError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| RaplError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn read_u64(path: &Path) -> Result<u64, RaplError> {
    let text = read_text(path)?;
    text.parse().map_err(|_| RaplError::Parse {
        path: path.to_path_buf(),
        text,
    })
}

/// µJ counted from `prev` to `now` by a counter that wraps to 0 after `max_range_uj`.
fn counter_delta(prev: u64, now: u64, max_range_uj: u64) -> u64 {
    if now >= prev {
        now - prev
    } else {
        max_range_uj.saturating_sub(prev).saturating_add(now)
    }
}

impl Rapl {
    /// The package domain of socket 0 ([`PACKAGE_0`]).
    pub fn package() -> Result<Rapl, RaplError> {
        let rapl = Rapl::open(PACKAGE_0)?;
        if !rapl.name.starts_with("package") {
            return Err(RaplError::NotPackage {
                dir: rapl.dir,
                name: rapl.name,
            });
        }
        Ok(rapl)
    }

    /// The domain in directory `dir` (a `/sys/class/powercap/intel-rapl:*` directory, or a copy
    /// of one): reads `name`, `max_energy_range_uj` and, once, `energy_uj`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Rapl, RaplError> {
        let dir = dir.into();
        let name = read_text(&dir.join("name"))?;
        let max_range_uj = read_u64(&dir.join("max_energy_range_uj"))?;
        let mut rapl = Rapl {
            dir,
            name,
            max_range_uj,
            last_uj: 0,
            energy_uj: 0,
            start_ns: 0,
            samples: 0,
        };
        rapl.last_uj = rapl.read_energy_uj()?;
        Ok(rapl)
    }

    /// The domain's name (`package-0`, `core`, `dram`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The domain's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The counter's range, in µJ: it wraps to zero beyond this.
    pub fn max_energy_range_uj(&self) -> u64 {
        self.max_range_uj
    }

    /// The raw counter, in µJ.
    pub fn read_energy_uj(&self) -> Result<u64, RaplError> {
        read_u64(&self.dir.join("energy_uj"))
    }

    fn accumulate(&mut self) -> Result<(), RaplError> {
        let now = self.read_energy_uj()?;
        let d = counter_delta(self.last_uj, now, self.max_range_uj);
        self.energy_uj = self.energy_uj.saturating_add(d);
        self.last_uj = now;
        self.samples = self.samples.saturating_add(1);
        Ok(())
    }
}

impl EnergyMeter for Rapl {
    type Error = RaplError;

    fn measures(&self) -> &'static str {
        "RAPL package domain: the whole CPU package (all cores, caches, uncore), including \
         anything else running on it during the window"
    }

    fn start(&mut self, now_ns: u64) -> Result<(), RaplError> {
        self.last_uj = self.read_energy_uj()?;
        self.energy_uj = 0;
        self.start_ns = now_ns;
        self.samples = 1;
        Ok(())
    }

    /// Reads the counter; call at least once per wrap period (`max_energy_range_uj` at the
    /// package's power: minutes) to count every wrap.
    fn sample(&mut self, _now_ns: u64) -> Result<(), RaplError> {
        self.accumulate()
    }

    fn stop(&mut self, now_ns: u64) -> Result<MeasuredEnergy, RaplError> {
        self.accumulate()?;
        Ok(MeasuredEnergy {
            energy_uj: self.energy_uj as f64,
            duration_ns: now_ns.saturating_sub(self.start_ns),
            samples: self.samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    /// A fake `/sys/class/powercap/intel-rapl:0` in a temporary directory.
    struct FakeDomain {
        dir: PathBuf,
    }

    impl FakeDomain {
        fn new(tag: &str, name: &str, max_range: &str, energy: &str) -> FakeDomain {
            let dir = std::env::temp_dir().join(format!(
                "mote-rapl-{tag}-{}/intel-rapl:0",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
            std::fs::write(dir.join("max_energy_range_uj"), format!("{max_range}\n")).unwrap();
            let d = FakeDomain { dir };
            d.set(energy);
            d
        }

        fn set(&self, energy: &str) {
            std::fs::write(self.dir.join("energy_uj"), format!("{energy}\n")).unwrap();
        }
    }

    impl Drop for FakeDomain {
        fn drop(&mut self) {
            if let Some(parent) = self.dir.parent() {
                let _ = std::fs::remove_dir_all(parent);
            }
        }
    }

    #[test]
    fn counts_energy_over_a_window() {
        let fake = FakeDomain::new("window", "package-0", "262143328850", "1000000");
        let mut rapl = Rapl::open(&fake.dir).unwrap();
        assert_eq!(rapl.name(), "package-0");
        assert_eq!(rapl.max_energy_range_uj(), 262_143_328_850);
        assert_eq!(rapl.dir(), fake.dir.as_path());
        rapl.start(1_000).unwrap();
        fake.set("1000400");
        rapl.sample(2_000).unwrap();
        fake.set("1001500");
        let m = rapl.stop(10_001_000).unwrap();
        assert_eq!(m.energy_uj, 1500.0);
        assert_eq!(m.duration_ns, 10_000_000);
        assert_eq!(m.samples, 3);
        // 1.5 mJ in 10 ms = 150 mW.
        assert!((m.mean_power_uw() - 150_000.0).abs() < 1e-6);
        assert!(rapl.measures().contains("package"));
    }

    #[test]
    fn handles_counter_wrap_around() {
        let fake = FakeDomain::new("wrap", "package-0", "1000000", "999000");
        let mut rapl = Rapl::open(&fake.dir).unwrap();
        rapl.start(0).unwrap();
        // Wraps once: 999 000 → 1 000 000 → 0 → 500.
        fake.set("500");
        rapl.sample(1).unwrap();
        // Twice, sampled in between: 500 → 999 999 → wrap → 2 000.
        fake.set("999999");
        rapl.sample(2).unwrap();
        fake.set("2000");
        let m = rapl.stop(3).unwrap();
        assert_eq!(m.energy_uj, (1000 + 500 + 999_499 + 1 + 2000) as f64);
        assert_eq!(counter_delta(10, 10, 100), 0);
        assert_eq!(counter_delta(90, 5, 100), 15);
        assert_eq!(counter_delta(150, 5, 100), 5); // a counter past its range does not underflow
    }

    #[test]
    fn errors_name_the_file_and_the_cause() {
        let fake = FakeDomain::new("errors", "package-0", "1000", "12");
        let mut rapl = Rapl::open(&fake.dir).unwrap();
        fake.set("twelve");
        let e = rapl.start(0).unwrap_err();
        assert!(matches!(e, RaplError::Parse { .. }));
        assert!(e.to_string().contains("energy_uj"), "{e}");

        let missing = fake.dir.join("nonexistent");
        let e = Rapl::open(&missing).unwrap_err();
        assert!(e.to_string().contains("no RAPL powercap domain"), "{e}");
        assert!(std::error::Error::source(&e).is_some());

        let dram = FakeDomain::new("dram", "dram", "1000", "0");
        let r = Rapl::open(&dram.dir).unwrap();
        assert_eq!(r.name(), "dram");
        let e = RaplError::NotPackage {
            dir: dram.dir.clone(),
            name: r.name().to_string(),
        };
        assert!(e.to_string().contains("not a package domain"));

        let e = RaplError::Io {
            path: PathBuf::from(PACKAGE_0).join("energy_uj"),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(e.to_string().contains("root"), "{e}");
    }

    /// On a machine with RAPL readable, the real package domain opens and counts; elsewhere the
    /// error says why (this test only checks that it does not panic).
    #[test]
    fn the_real_package_domain_opens_or_explains() {
        match Rapl::package() {
            Ok(mut r) => {
                r.start(0).unwrap();
                let m = r.stop(1).unwrap();
                assert!(m.energy_uj >= 0.0);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
