//! Label files written beside the captures.
//!
//! `flows_labels.csv` follows the nDPI-corpus column layout so the dataset
//! reader joins synthetic and real corpora the same way: by (file, l4,
//! unordered endpoint pair). No field can contain a comma or quote, so rows
//! are written directly without a CSV library.

use crate::gen::LabelRow;
use crate::{SynthError, SynthFile};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Exact header of `flows_labels.csv`.
pub(crate) const LABELS_HEADER: &str = "file,flow_idx,l4,endpoint_a,endpoint_b,ndpi_proto,ndpi_app,ndpi_category,encrypted,pkts,bytes,ndpi_confidence,sni,app_family,category,vpn,label_source";

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub(crate) fn write_labels(path: &Path, rows: &[LabelRow], seed: u64) -> Result<(), SynthError> {
    let err = |source| SynthError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut w = BufWriter::new(File::create(path).map_err(err)?);
    writeln!(w, "{LABELS_HEADER}").map_err(err)?;
    for r in rows {
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{},{},{},DPI,,{},{},{},privpkt-synth seed={seed}",
            r.file,
            r.flow_idx,
            r.l4,
            r.a,
            r.b,
            r.ndpi_proto,
            r.app,
            r.ndpi_category,
            yes_no(r.encrypted),
            r.pkts,
            r.bytes,
            r.app,
            r.category,
            yes_no(r.vpn),
        )
        .map_err(err)?;
    }
    w.flush().map_err(err)
}

pub(crate) fn write_classes(path: &Path, files: &[SynthFile]) -> Result<(), SynthError> {
    let err = |source| SynthError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut w = BufWriter::new(File::create(path).map_err(err)?);
    writeln!(w, "file,class").map_err(err)?;
    for f in files {
        let name = f.path.file_name().unwrap_or_default().to_string_lossy();
        writeln!(w, "{name},{}", f.class).map_err(err)?;
    }
    w.flush().map_err(err)
}
