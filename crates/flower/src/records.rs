//! The records a Flower message carries: arrays (model weights as `.npy` bytes), configs
//! (settings from the server) and metrics (numbers back to it), in a named, ordered dict.
//!
//! Order matters: an ArrayRecord's key order is the model's layer order (Python builds it
//! from a list with keys "0", "1", …), so every collection here is an ordered `Vec` of pairs,
//! never a hash map.

use privpkt_dataset::npy::{self, Dtype};

use crate::proto;
use crate::proto::config_record_value::Value as ConfigValue;
use crate::proto::metric_record_value::Value as MetricValue;

/// `Array.stype` of arrays whose data is a complete `.npy` file.
pub const STYPE_NUMPY: &str = "numpy.ndarray";

/// One array as Flower serialises it: its declared dtype and shape, and `data` (for
/// [`STYPE_NUMPY`], the bytes `np.save` writes).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub stype: String,
    pub data: Vec<u8>,
}

impl Array {
    /// A float32 array of `shape` (row-major `values`), serialised as numpy would.
    pub fn from_f32(shape: &[usize], values: &[f32]) -> Result<Array, String> {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        Ok(Array {
            dtype: "float32".into(),
            shape: shape.to_vec(),
            stype: STYPE_NUMPY.into(),
            data: npy::to_bytes(Dtype::F32, &dims, &bytes)?,
        })
    }

    /// The values of a float32 numpy array, checking that the `.npy` header agrees with the
    /// declared dtype and shape.
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        if self.stype != STYPE_NUMPY {
            return Err(format!("serialisation `{}`, expected `{STYPE_NUMPY}`", self.stype));
        }
        if self.dtype != "float32" {
            return Err(format!("dtype {}, the model's weights are float32", self.dtype));
        }
        let (info, data) = npy::parse_bytes(&self.data).map_err(|e| format!("bad .npy data: {e}"))?;
        if info.dtype != Dtype::F32 {
            return Err(format!("the .npy data holds {}, not <f4", info.dtype.descr()));
        }
        if info.shape.iter().map(|&d| d as usize).ne(self.shape.iter().copied()) {
            return Err(format!(
                "declared shape {:?} but the .npy data has shape {:?}",
                self.shape, info.shape
            ));
        }
        Ok(data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// Named arrays in order (a model's weights, layer by layer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArrayRecord {
    pub items: Vec<(String, Array)>,
}

impl ArrayRecord {
    /// Float32 tensors under keys "0", "1", … as Python's `ArrayRecord(list_of_ndarrays)` names
    /// them, so Flower's strategies treat them like a Python client's.
    pub fn from_f32<'a>(tensors: impl IntoIterator<Item = (&'a [usize], &'a [f32])>) -> Result<ArrayRecord, String> {
        let items = tensors
            .into_iter()
            .enumerate()
            .map(|(i, (shape, values))| Ok((i.to_string(), Array::from_f32(shape, values)?)))
            .collect::<Result<_, String>>()?;
        Ok(ArrayRecord { items })
    }
}

pub type ConfigRecord = proto::ConfigRecord;
pub type MetricRecord = proto::MetricRecord;

/// One record of a [`RecordDict`].
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Arrays(ArrayRecord),
    Metrics(MetricRecord),
    Config(ConfigRecord),
}

impl Record {
    /// Flower's type name of the record (also its object type).
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Arrays(_) => "ArrayRecord",
            Record::Metrics(_) => "MetricRecord",
            Record::Config(_) => "ConfigRecord",
        }
    }
}

/// A message's content: records by name, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordDict {
    pub items: Vec<(String, Record)>,
}

impl RecordDict {
    /// The only ArrayRecord (FedAvg sends exactly one: the global model).
    pub fn array_record(&self) -> Result<&ArrayRecord, String> {
        self.single("ArrayRecord", |r| match r {
            Record::Arrays(a) => Some(a),
            _ => None,
        })
    }

    /// The only ConfigRecord, or `None` if there is none.
    pub fn config_record(&self) -> Result<Option<&ConfigRecord>, String> {
        if !self.items.iter().any(|(_, r)| matches!(r, Record::Config(_))) {
            return Ok(None);
        }
        self.single("ConfigRecord", |r| match r {
            Record::Config(c) => Some(c),
            _ => None,
        })
        .map(Some)
    }

    /// The only MetricRecord.
    pub fn metric_record(&self) -> Result<&MetricRecord, String> {
        self.single("MetricRecord", |r| match r {
            Record::Metrics(m) => Some(m),
            _ => None,
        })
    }

    /// The only record of a kind; `what` names it in the error.
    fn single<T>(&self, what: &str, pick: for<'r> fn(&'r Record) -> Option<&'r T>) -> Result<&T, String> {
        let found: Vec<(&str, &T)> = self
            .items
            .iter()
            .filter_map(|(k, r)| pick(r).map(|t| (k.as_str(), t)))
            .collect();
        match found.as_slice() {
            [(_, t)] => Ok(t),
            [] => Err(format!("the message holds no {what} (records: {})", self.summary())),
            _ => Err(format!(
                "the message holds {} {what}s ({}), expected one",
                found.len(),
                found.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// `name (Kind), …` for error messages.
    pub fn summary(&self) -> String {
        if self.items.is_empty() {
            return "none".into();
        }
        self.items
            .iter()
            .map(|(k, r)| format!("{k} ({})", r.kind()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A number of a config record as f64, if `key` is there and numeric.
pub fn config_f64(cfg: &ConfigRecord, key: &str) -> Option<f64> {
    config_value(cfg, key).and_then(|v| match v {
        ConfigValue::Double(x) => Some(*x),
        ConfigValue::Sint64(x) => Some(*x as f64),
        ConfigValue::Uint64(x) => Some(*x as f64),
        _ => None,
    })
}

/// A config value by key (the last one if repeated, as Python's dict would keep).
pub fn config_value<'a>(cfg: &'a ConfigRecord, key: &str) -> Option<&'a ConfigValue> {
    cfg.items
        .iter()
        .rev()
        .find(|i| i.key == key)
        .and_then(|i| i.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// A non-negative whole number of a config record: `Ok(None)` if absent, an error naming the
/// key if it is there but not a whole number ≥ `min`.
pub fn config_count(cfg: &ConfigRecord, key: &str, min: u64) -> Result<Option<u64>, String> {
    let Some(v) = config_value(cfg, key) else {
        return Ok(None);
    };
    let n = match v {
        ConfigValue::Sint64(x) if *x >= 0 => Some(*x as u64),
        ConfigValue::Uint64(x) => Some(*x),
        ConfigValue::Double(x) if x.fract() == 0.0 && *x >= 0.0 && *x < 1e15 => Some(*x as u64),
        _ => None,
    };
    match n {
        Some(n) if n >= min => Ok(Some(n)),
        _ => Err(format!(
            "config `{key}` must be a whole number ≥ {min}, got {}",
            show_config(v)
        )),
    }
}

/// How a config value prints in error messages.
pub fn show_config(v: &ConfigValue) -> String {
    match v {
        ConfigValue::Double(x) => x.to_string(),
        ConfigValue::Sint64(x) => x.to_string(),
        ConfigValue::Uint64(x) => x.to_string(),
        ConfigValue::Bool(x) => x.to_string(),
        ConfigValue::String(x) => format!("{x:?}"),
        ConfigValue::Bytes(x) => format!("{} bytes", x.len()),
        _ => "a list".into(),
    }
}

/// A metric value: Python ints become sint64, floats double.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    Int(i64),
    Float(f64),
}

/// A metric record from (key, value) pairs, in that order.
pub fn metric_record(pairs: &[(&str, Metric)]) -> MetricRecord {
    MetricRecord {
        items: pairs
            .iter()
            .map(|(k, v)| proto::metric_record::Item {
                key: (*k).to_string(),
                value: Some(proto::MetricRecordValue {
                    value: Some(match *v {
                        Metric::Int(i) => MetricValue::Sint64(i),
                        Metric::Float(f) => MetricValue::Double(f),
                    }),
                }),
            })
            .collect(),
    }
}

/// A config record from (key, value) pairs, in that order.
pub fn config_record(pairs: Vec<(&str, ConfigValue)>) -> ConfigRecord {
    ConfigRecord {
        items: pairs
            .into_iter()
            .map(|(k, v)| proto::config_record::Item {
                key: k.to_string(),
                value: Some(proto::ConfigRecordValue { value: Some(v) }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_arrays_round_trip_and_check_their_header() {
        let a = Array::from_f32(&[2, 3], &[0., 1., 2., 3., 4., 5.]).unwrap();
        assert_eq!((a.dtype.as_str(), a.stype.as_str()), ("float32", STYPE_NUMPY));
        assert_eq!(a.to_f32().unwrap(), [0., 1., 2., 3., 4., 5.]);
        assert!(Array::from_f32(&[2, 2], &[1.0]).unwrap_err().contains("needs 16 bytes"));
        let mut wrong = a.clone();
        wrong.shape = vec![3, 2];
        assert!(wrong.to_f32().unwrap_err().contains("declared shape [3, 2]"));
        let mut f64s = a.clone();
        f64s.dtype = "float64".into();
        assert!(f64s.to_f32().unwrap_err().contains("dtype float64"));
        let mut other = a;
        other.stype = "torch.tensor".into();
        assert!(other.to_f32().unwrap_err().contains("torch.tensor"));
    }

    #[test]
    fn array_record_keys_follow_layer_order() {
        let shapes = [vec![2usize], vec![1], vec![3]];
        let vals = [vec![1f32, 2.], vec![3.], vec![4., 5., 6.]];
        let r = ArrayRecord::from_f32(shapes.iter().zip(&vals).map(|(s, v)| (s.as_slice(), v.as_slice()))).unwrap();
        let keys: Vec<&str> = r.items.iter().map(|i| i.0.as_str()).collect();
        assert_eq!(keys, ["0", "1", "2"]);
        assert_eq!(r.items[2].1.to_f32().unwrap(), [4., 5., 6.]);
    }

    #[test]
    fn config_access_and_errors() {
        let c = config_record(vec![
            ("server-round", ConfigValue::Sint64(3)),
            ("lr", ConfigValue::Double(0.01)),
            ("local-epochs", ConfigValue::Double(2.0)),
            ("bad", ConfigValue::String("x".into())),
            ("neg", ConfigValue::Sint64(-1)),
        ]);
        assert_eq!(config_f64(&c, "lr"), Some(0.01));
        assert_eq!(config_f64(&c, "server-round"), Some(3.0));
        assert_eq!(config_f64(&c, "missing"), None);
        assert_eq!(config_count(&c, "local-epochs", 1), Ok(Some(2)));
        assert_eq!(config_count(&c, "missing", 1), Ok(None));
        assert!(config_count(&c, "bad", 1)
            .unwrap_err()
            .contains("`bad` must be a whole number ≥ 1, got \"x\""));
        assert!(config_count(&c, "neg", 0).is_err());
        let d = RecordDict {
            items: vec![
                ("config".into(), Record::Config(c.clone())),
                ("a".into(), Record::Arrays(ArrayRecord::default())),
                ("b".into(), Record::Arrays(ArrayRecord::default())),
            ],
        };
        assert_eq!(d.config_record().unwrap(), Some(&c));
        assert_eq!(RecordDict::default().config_record().unwrap(), None);
        assert!(d.array_record().unwrap_err().contains("2 ArrayRecords (a, b)"));
        assert!(d
            .metric_record()
            .unwrap_err()
            .contains("no MetricRecord (records: config (ConfigRecord), a (ArrayRecord), b (ArrayRecord))"));
    }
}
