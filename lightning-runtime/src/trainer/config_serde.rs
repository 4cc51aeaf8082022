//! The trainer flags as config-file values, in Lightning's spellings: `TrainerConfig`
//! (de)serializes to the `trainer:` section of a `LightningCLI` config.

use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{Limit, Strategy};
use crate::{Accelerator, GradientClipAlgorithm, Precision};

/// A flag written as a string (`"bf16-mixed"`, `"ddp"`, `"cuda:1"`), read back with `FromStr`.
macro_rules! as_string {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(|e: crate::Error| de::Error::custom(config_reason(e)))
            }
        }
    )*};
}
as_string!(Precision, Strategy, Accelerator, GradientClipAlgorithm);

/// The reason of a flag's parse error, without the `invalid flag` prefix the key repeats.
fn config_reason(e: crate::Error) -> String {
    match e {
        crate::Error::Config { reason, .. } => reason,
        other => other.to_string(),
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Limit::Fraction(f) => s.serialize_f64(f),
            Limit::Batches(n) => s.serialize_u64(n as u64),
        }
    }
}

/// Lightning's rule: an integer counts batches, a float is a fraction of the loader.
impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Limit;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a batch count (integer) or a fraction in [0, 1] (float)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Limit, E> {
                Ok(Limit::Batches(v as usize))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Limit, E> {
                Ok(if v < 0 { Limit::Fraction(v as f64) } else { Limit::Batches(v as usize) })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Limit, E> {
                Ok(Limit::Fraction(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `num_sanity_val_steps`: Lightning's -1 ("all") is `usize::MAX`.
pub(crate) mod all_is_minus_one {
    use super::*;

    pub fn serialize<S: Serializer>(v: &usize, s: S) -> Result<S::Ok, S::Error> {
        if *v == usize::MAX {
            s.serialize_i64(-1)
        } else {
            s.serialize_u64(*v as u64)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        match i64::deserialize(d)? {
            -1 => Ok(usize::MAX),
            n if n >= 0 => Ok(n as usize),
            n => Err(de::Error::custom(format!("{n} is not a batch count: use -1 for all, 0 for none"))),
        }
    }
}

/// `max_time`: Lightning's `"DD:HH:MM:SS"` string (a number is seconds).
pub(crate) mod max_time {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        let Some(t) = v else { return s.serialize_none() };
        let secs = t.as_secs();
        let (d, h, m, sec) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
        s.collect_str(&format_args!("{d:02}:{h:02}:{m:02}:{sec:02}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(f64),
            Text(String),
        }
        let bad = |s: &str| de::Error::custom(format!("`{s}` is not a duration: use \"DD:HH:MM:SS\" or seconds"));
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Seconds(s)) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
            Some(Raw::Seconds(s)) => Err(bad(&s.to_string())),
            Some(Raw::Text(t)) => {
                let parts: Vec<u64> = t.split(':').map(str::parse).collect::<Result<_, _>>().map_err(|_| bad(&t))?;
                let [d, h, m, s] = parts[..] else { return Err(bad(&t)) };
                Ok(Some(Duration::from_secs(((d * 24 + h) * 60 + m) * 60 + s)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::TrainerConfig;

    #[test]
    fn every_flag_round_trips_through_json() {
        let mut c = TrainerConfig {
            max_epochs: Some(3),
            num_sanity_val_steps: usize::MAX,
            limit_val_batches: super::Limit::Batches(4),
            max_time: Some(std::time::Duration::from_secs(90_061)),
            precision: Some(crate::Precision::Bf16Mixed),
            accelerator: crate::Accelerator::Cuda(1),
            ..Default::default()
        };
        c.strategy = crate::Strategy::Ddp;
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["num_sanity_val_steps"], -1);
        assert_eq!(v["max_time"], "01:01:01:01");
        assert_eq!(v["precision"], "bf16-mixed");
        assert_eq!(v["accelerator"], "cuda:1");
        assert_eq!(v["limit_train_batches"], 1.0);
        let back: TrainerConfig = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
        assert_eq!(back.limit_train_batches, super::Limit::Fraction(1.0));
        assert_eq!(back.limit_val_batches, super::Limit::Batches(4));
    }
}
