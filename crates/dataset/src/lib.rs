//! privpkt-dataset: labels, the on-disk dataset store, splits and `prepare`.
//!
//! Sits between `privpkt-capture` (which turns captures into samples) and the models: it
//! decides which class each flow is, which samples are kept, which split they belong to, and
//! writes them where numpy and privpkt's trainers can memory-map them.

pub mod labels;
pub mod npy;
pub mod partition;
pub mod prepare;
pub mod split;
pub mod store;

pub use labels::{ClassMap, FlowLabels, LabelColumn, LabelSource, LabelSpec, PathRules};
pub use prepare::{prepare, PrepareConfig, PrepareError, Progress};
pub use split::{Split, SplitConfig, SplitUnit};
pub use store::{Dataset, IndexRow, Manifest, Storage};
