//! The `privpkt` command line as a library: each command's arguments and `run`, the experiment
//! plans and reports. `main.rs` only dispatches; keeping the commands here lets tools (the
//! fuzz targets, for one) reach the same parsers the binary uses.

pub mod cmd_attack;
pub mod cmd_audit;
pub mod cmd_classify;
pub mod cmd_eval;
pub mod cmd_federate;
pub mod cmd_flower;
pub mod cmd_inspect;
pub mod cmd_plot;
pub mod cmd_prepare;
pub mod cmd_privacy;
pub mod cmd_report;
pub mod cmd_synth;
pub mod cmd_train;
pub mod demo;
pub mod dpargs;
pub mod experiment;
pub mod plots;
pub mod report;
pub mod results;
pub mod trainargs;
pub mod ui;
