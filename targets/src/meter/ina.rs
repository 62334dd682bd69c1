//! Texas Instruments INA219 and INA226 current/power monitors over `embedded-hal` 1.0 I2C.
//!
//! The chip sits on a shunt resistor in the supply rail of the device under test and measures the
//! shunt voltage (hence the current) and the bus voltage; with the calibration register
//! programmed it also computes current and power itself. These drivers program that register
//! from the shunt resistance and the largest expected current, as the datasheets prescribe, read
//! the power register, and as an [`EnergyMeter`] integrate power over the inference window.
//!
//! Both are `no_std` and allocation-free: a firmware can measure its own board, or a host (for
//! example a Raspberry Pi through `linux-embedded-hal`) can measure a microcontroller.
//!
//! Registers are 16-bit, big-endian; a read writes the register pointer and reads two bytes
//! (`write_read`), a write sends the pointer and two bytes.
//!
//! Sources: INA219 datasheet (TI SBOS448), section 8.5 "Programming": calibration
//! `Cal = trunc(0.04096 / (Current_LSB × R_shunt))`, `Power_LSB = 20 × Current_LSB`, bus voltage
//! LSB 4 mV in bits 15..3 with CNVR (bit 1) and OVF (bit 0), shunt voltage LSB 10 µV, PGA ranges
//! ±40/80/160/320 mV; INA226 datasheet (TI SBOS547), section 7.5: `CAL = trunc(0.00512 /
//! (Current_LSB × R_shunt))`, `Power_LSB = 25 × Current_LSB`, bus voltage LSB 1.25 mV, shunt
//! voltage LSB 2.5 µV (±81.92 mV), Mask/Enable OVF bit 2, manufacturer ID 0x5449 and die ID
//! 0x226x.

use core::fmt;

use embedded_hal::i2c::I2c;

use super::{EnergyMeter, MeasuredEnergy, PowerIntegrator};

/// The I2C address with A0 and A1 tied to ground (both chips).
pub const DEFAULT_ADDRESS: u8 = 0x40;

/// What went wrong talking to an INA219 / INA226.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InaError<E> {
    /// The I2C bus reported an error.
    I2c(E),
    /// The shunt resistance and maximum current cannot be programmed: not positive and finite,
    /// a full-scale shunt voltage beyond the chip's range, or a current resolution the
    /// calibration register cannot express.
    Calibration,
    /// The chip flagged a math overflow: current or power exceed their registers' range (the
    /// maximum current given at calibration is too low for the load).
    Overflow,
    /// The chip at the address does not identify as an INA226.
    WrongDevice {
        /// The manufacturer ID read (0x5449, "TI", for an INA226).
        manufacturer: u16,
        /// The die ID read (0x226x for an INA226).
        die: u16,
    },
}

impl<E: fmt::Debug> fmt::Display for InaError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InaError::I2c(e) => write!(f, "I2C error: {e:?}"),
            InaError::Calibration => f.write_str(
                "the shunt resistance and maximum current cannot be programmed into the chip",
            ),
            InaError::Overflow => f.write_str(
                "the power monitor overflowed: the load exceeds the calibrated maximum current",
            ),
            InaError::WrongDevice { manufacturer, die } => write!(
                f,
                "not an INA226: manufacturer ID {manufacturer:#06x}, die ID {die:#06x}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl<E: fmt::Debug> std::error::Error for InaError<E> {}

/// The shunt a monitor measures through, and the largest current to expect.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shunt {
    /// Shunt resistance, in ohms.
    pub ohms: f64,
    /// Largest current to measure, in amperes (sets the current resolution: max / 2¹⁵).
    pub max_current_a: f64,
}

/// A programmed calibration: the register value and the resulting resolutions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// The calibration register value.
    pub register: u16,
    /// Current register LSB, in A.
    pub current_lsb_a: f64,
    /// Power register LSB, in W.
    pub power_lsb_w: f64,
}

impl Calibration {
    /// From the datasheet: `register = trunc(scale / (current_lsb × R))` with `current_lsb =
    /// max_current / 2¹⁵`, clamped to `max_register` and masked with `mask`; the current LSB is
    /// then recomputed from the register actually programmed so that readings stay exact.
    fn compute(
        shunt: &Shunt,
        scale: f64,
        max_register: u16,
        mask: u16,
        power_per_current: f64,
    ) -> Option<Calibration> {
        let ok = |x: f64| x.is_finite() && x > 0.0;
        if !ok(shunt.ohms) || !ok(shunt.max_current_a) {
            return None;
        }
        let wanted_lsb = shunt.max_current_a / 32768.0;
        let raw = scale / (wanted_lsb * shunt.ohms);
        // A float-to-int `as` cast truncates and saturates.
        let register = (raw.min(max_register as f64) as u16) & mask;
        if register == 0 {
            return None;
        }
        let current_lsb_a = scale / (register as f64 * shunt.ohms);
        Some(Calibration {
            register,
            current_lsb_a,
            power_lsb_w: power_per_current * current_lsb_a,
        })
    }
}

/// Register access shared by both chips.
struct Bus<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Bus<I2C> {
    fn read(&mut self, reg: u8) -> Result<u16, InaError<I2C::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[reg], &mut buf)
            .map_err(InaError::I2c)?;
        Ok(u16::from_be_bytes(buf))
    }

    fn write(&mut self, reg: u8, value: u16) -> Result<(), InaError<I2C::Error>> {
        let [hi, lo] = value.to_be_bytes();
        self.i2c
            .write(self.address, &[reg, hi, lo])
            .map_err(InaError::I2c)
    }
}

const REG_CONFIG: u8 = 0x00;
const REG_SHUNT: u8 = 0x01;
const REG_BUS: u8 = 0x02;
const REG_POWER: u8 = 0x03;
const REG_CURRENT: u8 = 0x04;
const REG_CALIBRATION: u8 = 0x05;

/// An INA219 (26 V bus, 12-bit ADC, PGA on the shunt input).
pub struct Ina219<I2C> {
    bus: Bus<I2C>,
    calibration: Calibration,
    config: u16,
    integrator: PowerIntegrator,
}

impl<I2C: I2c> Ina219<I2C> {
    /// Programs the chip at `address`: configuration (32 V bus range, the smallest PGA range that
    /// holds `max_current_a × ohms`, 12-bit conversions, continuous shunt and bus) and the
    /// calibration register for `shunt`.
    pub fn new(i2c: I2C, address: u8, shunt: Shunt) -> Result<Self, InaError<I2C::Error>> {
        let full_scale_v = shunt.ohms * shunt.max_current_a;
        // PG = 0..3: ±40, ±80, ±160, ±320 mV.
        let pg = [0.04, 0.08, 0.16, 0.32]
            .iter()
            // The tolerance keeps a full scale of exactly 40 mV in the 40 mV range despite rounding.
            .position(|&range| full_scale_v <= range * (1.0 + 1e-9))
            .ok_or(InaError::Calibration)? as u16;
        let calibration = Calibration::compute(&shunt, 0.04096, 0xFFFE, 0xFFFE, 20.0)
            .ok_or(InaError::Calibration)?;
        // BRNG = 1 (32 V), PG, BADC = SADC = 0b0011 (12-bit, 532 µs), MODE = 0b111 (continuous).
        let config = (1 << 13) | (pg << 11) | (0b0011 << 7) | (0b0011 << 3) | 0b111;
        let mut bus = Bus { i2c, address };
        bus.write(REG_CONFIG, config)?;
        bus.write(REG_CALIBRATION, calibration.register)?;
        Ok(Ina219 {
            bus,
            calibration,
            config,
            integrator: PowerIntegrator::new(),
        })
    }

    /// The calibration programmed.
    pub fn calibration(&self) -> Calibration {
        self.calibration
    }

    /// The configuration register value programmed.
    pub fn config(&self) -> u16 {
        self.config
    }

    /// Bus voltage (IN− to ground), in V. Fails with [`InaError::Overflow`] when the chip flags a
    /// math overflow.
    pub fn bus_voltage_v(&mut self) -> Result<f64, InaError<I2C::Error>> {
        let raw = self.bus.read(REG_BUS)?;
        if raw & 1 != 0 {
            return Err(InaError::Overflow);
        }
        Ok((raw >> 3) as f64 * 0.004)
    }

    /// Shunt voltage, in V (signed).
    pub fn shunt_voltage_v(&mut self) -> Result<f64, InaError<I2C::Error>> {
        Ok(self.bus.read(REG_SHUNT)? as i16 as f64 * 10e-6)
    }

    /// Current through the shunt, in A (signed).
    pub fn current_a(&mut self) -> Result<f64, InaError<I2C::Error>> {
        Ok(self.bus.read(REG_CURRENT)? as i16 as f64 * self.calibration.current_lsb_a)
    }

    /// Power delivered to the load (bus voltage × current), in µW. Checks the overflow flag in
    /// the bus voltage register first.
    pub fn power_uw(&mut self) -> Result<f64, InaError<I2C::Error>> {
        self.bus_voltage_v()?;
        Ok(self.bus.read(REG_POWER)? as f64 * self.calibration.power_lsb_w * 1e6)
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.bus.i2c
    }
}

impl<I2C: I2c> EnergyMeter for Ina219<I2C> {
    type Error = InaError<I2C::Error>;

    fn measures(&self) -> &'static str {
        "INA219: power into the load on the shunted supply rail (bus voltage x shunt current), \
         integrated over the window"
    }

    fn start(&mut self, now_ns: u64) -> Result<(), Self::Error> {
        let p = self.power_uw()?;
        self.integrator.start(now_ns, p);
        Ok(())
    }

    fn sample(&mut self, now_ns: u64) -> Result<(), Self::Error> {
        let p = self.power_uw()?;
        self.integrator.add(now_ns, p);
        Ok(())
    }

    fn stop(&mut self, now_ns: u64) -> Result<MeasuredEnergy, Self::Error> {
        let p = self.power_uw()?;
        Ok(self.integrator.finish(now_ns, p))
    }
}

const REG_MASK_ENABLE: u8 = 0x06;
const REG_MANUFACTURER_ID: u8 = 0xFE;
const REG_DIE_ID: u8 = 0xFF;

/// An INA226 (36 V bus, 16-bit ADC, fixed ±81.92 mV shunt range).
pub struct Ina226<I2C> {
    bus: Bus<I2C>,
    calibration: Calibration,
    integrator: PowerIntegrator,
}

impl<I2C: I2c> Ina226<I2C> {
    /// The configuration programmed: averaging 1, bus and shunt conversion 1.1 ms, continuous
    /// shunt and bus (the power-on default, 0x4127).
    pub const CONFIG: u16 = 0x4127;

    /// Checks that the chip at `address` is an INA226, then programs [`Ina226::CONFIG`] and the
    /// calibration register for `shunt`.
    pub fn new(i2c: I2C, address: u8, shunt: Shunt) -> Result<Self, InaError<I2C::Error>> {
        let mut bus = Bus { i2c, address };
        let manufacturer = bus.read(REG_MANUFACTURER_ID)?;
        let die = bus.read(REG_DIE_ID)?;
        if manufacturer != 0x5449 || die >> 4 != 0x226 {
            return Err(InaError::WrongDevice { manufacturer, die });
        }
        if shunt.ohms * shunt.max_current_a > 0.08192 {
            return Err(InaError::Calibration);
        }
        let calibration = Calibration::compute(&shunt, 0.00512, 0x7FFF, 0x7FFF, 25.0)
            .ok_or(InaError::Calibration)?;
        bus.write(REG_CONFIG, Self::CONFIG)?;
        bus.write(REG_CALIBRATION, calibration.register)?;
        Ok(Ina226 {
            bus,
            calibration,
            integrator: PowerIntegrator::new(),
        })
    }

    /// The calibration programmed.
    pub fn calibration(&self) -> Calibration {
        self.calibration
    }

    /// Bus voltage, in V.
    pub fn bus_voltage_v(&mut self) -> Result<f64, InaError<I2C::Error>> {
        Ok((self.bus.read(REG_BUS)? & 0x7FFF) as f64 * 1.25e-3)
    }

    /// Shunt voltage, in V (signed).
    pub fn shunt_voltage_v(&mut self) -> Result<f64, InaError<I2C::Error>> {
        Ok(self.bus.read(REG_SHUNT)? as i16 as f64 * 2.5e-6)
    }

    /// Current through the shunt, in A (signed).
    pub fn current_a(&mut self) -> Result<f64, InaError<I2C::Error>> {
        Ok(self.bus.read(REG_CURRENT)? as i16 as f64 * self.calibration.current_lsb_a)
    }

    /// Power delivered to the load, in µW. Checks the overflow flag (Mask/Enable bit 2) first.
    pub fn power_uw(&mut self) -> Result<f64, InaError<I2C::Error>> {
        if self.bus.read(REG_MASK_ENABLE)? & (1 << 2) != 0 {
            return Err(InaError::Overflow);
        }
        Ok(self.bus.read(REG_POWER)? as f64 * self.calibration.power_lsb_w * 1e6)
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.bus.i2c
    }
}

impl<I2C: I2c> EnergyMeter for Ina226<I2C> {
    type Error = InaError<I2C::Error>;

    fn measures(&self) -> &'static str {
        "INA226: power into the load on the shunted supply rail (bus voltage x shunt current), \
         integrated over the window"
    }

    fn start(&mut self, now_ns: u64) -> Result<(), Self::Error> {
        let p = self.power_uw()?;
        self.integrator.start(now_ns, p);
        Ok(())
    }

    fn sample(&mut self, now_ns: u64) -> Result<(), Self::Error> {
        let p = self.power_uw()?;
        self.integrator.add(now_ns, p);
        Ok(())
    }

    fn stop(&mut self, now_ns: u64) -> Result<MeasuredEnergy, Self::Error> {
        let p = self.power_uw()?;
        Ok(self.integrator.finish(now_ns, p))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};

    use super::*;

    const A: u8 = DEFAULT_ADDRESS;

    fn read(reg: u8, value: u16) -> T {
        T::write_read(A, vec![reg], value.to_be_bytes().to_vec())
    }

    fn write(reg: u8, value: u16) -> T {
        let [hi, lo] = value.to_be_bytes();
        T::write(A, vec![reg, hi, lo])
    }

    /// The SBOS448 calibration equation for a 0.1 Ω shunt and 2 A maximum: Current_LSB =
    /// 2 A / 2¹⁵ = 61.04 µA, Cal = trunc(0.04096 / (61.04 µA × 0.1 Ω)) = 6710 (even, so kept).
    #[test]
    fn ina219_calibration_follows_the_datasheet() {
        let shunt = Shunt {
            ohms: 0.1,
            max_current_a: 2.0,
        };
        let c = Calibration::compute(&shunt, 0.04096, 0xFFFE, 0xFFFE, 20.0).unwrap();
        assert_eq!(c.register, 6710);
        assert!((c.current_lsb_a - 61.04e-6).abs() < 0.01e-6, "{c:?}");
        assert!((c.power_lsb_w - 20.0 * c.current_lsb_a).abs() < 1e-15);
        // Truncation leaves 13421; bit 0 does not exist on the INA219, so 13420 is programmed.
        let one_amp = Shunt {
            ohms: 0.1,
            max_current_a: 1.0,
        };
        let c = Calibration::compute(&one_amp, 0.04096, 0xFFFE, 0xFFFE, 20.0).unwrap();
        assert_eq!(c.register, 13420);
        // A resolution finer than the register can express saturates it; the LSB follows.
        let tiny = Shunt {
            ohms: 0.01,
            max_current_a: 0.01,
        };
        let c = Calibration::compute(&tiny, 0.04096, 0xFFFE, 0xFFFE, 20.0).unwrap();
        assert_eq!(c.register, 0xFFFE);
        assert!(c.current_lsb_a > 0.01 / 32768.0);
        assert!((c.current_lsb_a - 0.04096 / (65534.0 * 0.01)).abs() < 1e-15);
    }

    #[test]
    fn ina219_programs_config_and_calibration_then_reads_power() {
        // 0.1 Ω, 1.6384 A: full scale 163.84 mV → PGA /8; Current_LSB 50 µA, Cal 8192,
        // Power_LSB 1 mW.
        let expect = [
            write(REG_CONFIG, 0x399F),
            write(REG_CALIBRATION, 8192),
            // bus voltage 5.0 V: 1250 << 3, CNVR set, no overflow.
            read(REG_BUS, (1250 << 3) | 0b10),
            read(REG_POWER, 500),              // 500 × 1 mW = 0.5 W
            read(REG_SHUNT, 0xFFF6),           // −10 × 10 µV
            read(REG_CURRENT, 2000),           // 2000 × 50 µA = 0.1 A
            read(REG_BUS, (1250 << 3) | 0b11), // overflow flagged
        ];
        let mut i2c = Mock::new(&expect);
        let mut ina = Ina219::new(
            i2c.clone(),
            A,
            Shunt {
                ohms: 0.1,
                max_current_a: 1.6384,
            },
        )
        .unwrap();
        assert_eq!(ina.config(), 0x399F);
        let p = ina.power_uw().unwrap();
        assert!((p - 500_000.0).abs() < 1e-6, "{p}");
        assert!((ina.shunt_voltage_v().unwrap() + 100e-6).abs() < 1e-12);
        assert!((ina.current_a().unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(ina.bus_voltage_v(), Err(InaError::Overflow));
        ina.release();
        i2c.done();
    }

    #[test]
    fn ina219_picks_the_smallest_pga_range() {
        // 0.1 Ω × 0.4 A = 40 mV → PG = 0 (±40 mV): config 0x219F.
        let expect = [write(REG_CONFIG, 0x219F), write(REG_CALIBRATION, 33554)];
        let mut i2c = Mock::new(&expect);
        let ina = Ina219::new(
            i2c.clone(),
            A,
            Shunt {
                ohms: 0.1,
                max_current_a: 0.4,
            },
        )
        .unwrap();
        assert_eq!(ina.config() >> 11 & 0b11, 0);
        drop(ina);
        i2c.done();
        // Beyond ±320 mV, or nonsense, is refused before touching the bus.
        let mut i2c = Mock::new(&[]);
        for shunt in [
            Shunt {
                ohms: 0.1,
                max_current_a: 4.0,
            },
            Shunt {
                ohms: 0.0,
                max_current_a: 1.0,
            },
            Shunt {
                ohms: f64::NAN,
                max_current_a: 1.0,
            },
        ] {
            assert!(matches!(
                Ina219::new(i2c.clone(), A, shunt),
                Err(InaError::Calibration)
            ));
        }
        i2c.done();
    }

    /// An inference window on an INA219: power read at start, at two samples and at stop; the
    /// energy is the trapezoidal integral of those readings.
    #[test]
    fn ina219_integrates_power_over_the_window() {
        let bus_ok = (1250u16 << 3) | 0b10;
        let mut expect = vec![write(REG_CONFIG, 0x399F), write(REG_CALIBRATION, 8192)];
        // 1 mW per LSB: 100 mW, 100 mW, 200 mW, 200 mW.
        for power in [100u16, 100, 200, 200] {
            expect.push(read(REG_BUS, bus_ok));
            expect.push(read(REG_POWER, power));
        }
        let mut i2c = Mock::new(&expect);
        let mut ina = Ina219::new(
            i2c.clone(),
            A,
            Shunt {
                ohms: 0.1,
                max_current_a: 1.6384,
            },
        )
        .unwrap();
        // 1 ms apart: 100 µJ + 150 µJ + 200 µJ = 450 µJ.
        ina.start(0).unwrap();
        ina.sample(1_000_000).unwrap();
        ina.sample(2_000_000).unwrap();
        let m = ina.stop(3_000_000).unwrap();
        assert!((m.energy_uj - 450.0).abs() < 1e-9, "{m:?}");
        assert_eq!(m.samples, 4);
        assert_eq!(m.duration_ns, 3_000_000);
        assert!((m.mean_power_uw() - 150_000.0).abs() < 1e-6);
        assert!(ina.measures().contains("INA219"));
        drop(ina);
        i2c.done();
    }

    #[test]
    fn ina219_passes_bus_errors_on() {
        let expect = [write(REG_CONFIG, 0x399F).with_error(ErrorKind::Other)];
        let mut i2c = Mock::new(&expect);
        let r = Ina219::new(
            i2c.clone(),
            A,
            Shunt {
                ohms: 0.1,
                max_current_a: 1.6384,
            },
        );
        assert!(matches!(r, Err(InaError::I2c(ErrorKind::Other))));
        i2c.done();
    }

    /// The SBOS547 calibration equation for a 2 mΩ shunt and 15 A maximum: Current_LSB =
    /// 15 A / 2¹⁵ = 457.8 µA, CAL = trunc(0.00512 / (457.8 µA × 0.002 Ω)) = 5592.
    #[test]
    fn ina226_calibration_follows_the_datasheet() {
        let c = Calibration::compute(
            &Shunt {
                ohms: 0.002,
                max_current_a: 15.0,
            },
            0.00512,
            0x7FFF,
            0x7FFF,
            25.0,
        )
        .unwrap();
        assert_eq!(c.register, 5592);
        assert!((c.power_lsb_w - 25.0 * c.current_lsb_a).abs() < 1e-15);
    }

    #[test]
    fn ina226_checks_its_identity_programs_and_measures() {
        // 0.1 Ω, 0.8192 A → Current_LSB 25 µA, CAL = 0.00512 / 2.5e-6 = 2048, Power_LSB 625 µW.
        let mut expect: Vec<T> = vec![
            read(REG_MANUFACTURER_ID, 0x5449),
            read(REG_DIE_ID, 0x2260),
            write(REG_CONFIG, Ina226::<Mock>::CONFIG),
            write(REG_CALIBRATION, 2048),
            read(REG_BUS, 2640),    // 3.3 V
            read(REG_SHUNT, 400),   // 1 mV
            read(REG_CURRENT, 400), // 10 mA
        ];
        // A window: 6.25 mW then 12.5 mW, 2 ms apart → 18.75 µJ.
        for power in [10u16, 20] {
            expect.push(read(REG_MASK_ENABLE, 0x0008));
            expect.push(read(REG_POWER, power));
        }
        expect.push(read(REG_MASK_ENABLE, 0x0004)); // overflow
        let mut i2c = Mock::new(&expect);
        let mut ina = Ina226::new(
            i2c.clone(),
            A,
            Shunt {
                ohms: 0.1,
                max_current_a: 0.8192,
            },
        )
        .unwrap();
        assert_eq!(ina.calibration().register, 2048);
        assert!((ina.bus_voltage_v().unwrap() - 3.3).abs() < 1e-12);
        assert!((ina.shunt_voltage_v().unwrap() - 1e-3).abs() < 1e-12);
        assert!((ina.current_a().unwrap() - 0.01).abs() < 1e-12);
        ina.start(5_000).unwrap();
        let m = ina.stop(2_005_000).unwrap();
        assert!((m.energy_uj - 18.75).abs() < 1e-9, "{m:?}");
        assert_eq!(ina.power_uw(), Err(InaError::Overflow));
        assert!(ina.measures().contains("INA226"));
        ina.release();
        i2c.done();
    }

    #[test]
    fn ina226_refuses_another_chip_and_impossible_shunts() {
        let expect = [read(REG_MANUFACTURER_ID, 0x5449), read(REG_DIE_ID, 0x2190)];
        let mut i2c = Mock::new(&expect);
        let shunt = Shunt {
            ohms: 0.1,
            max_current_a: 0.5,
        };
        let e = Ina226::new(i2c.clone(), A, shunt).err().unwrap();
        assert_eq!(
            e,
            InaError::WrongDevice {
                manufacturer: 0x5449,
                die: 0x2190
            }
        );
        assert!(std::format!("{e}").contains("0x2190"));
        i2c.done();

        // 0.1 Ω × 1 A = 100 mV > 81.92 mV.
        let expect = [read(REG_MANUFACTURER_ID, 0x5449), read(REG_DIE_ID, 0x2260)];
        let mut i2c = Mock::new(&expect);
        let too_big = Shunt {
            ohms: 0.1,
            max_current_a: 1.0,
        };
        assert!(matches!(
            Ina226::new(i2c.clone(), A, too_big),
            Err(InaError::Calibration)
        ));
        i2c.done();
    }
}
