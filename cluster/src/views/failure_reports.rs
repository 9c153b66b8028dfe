//! CLUSTER COUNT-FAILURE-REPORTS.

use crate::core::node::{FailureReport, NodeId};
use crate::core::Core;
use crate::views::ViewError;

/// Redis's `CLUSTER_FAIL_REPORT_VALIDITY_MULT`: a failure report counts for this many node
/// timeouts.
pub const FAIL_REPORT_VALIDITY_MULT: u64 = 2;

/// [`FAIL_REPORT_VALIDITY_MULT`] node timeouts.
pub fn count_failure_reports(core: &Core, id: &NodeId) -> Result<usize, ViewError> {
    let record = core.node(id).ok_or(ViewError::UnknownNode(*id))?;
    let validity_ms = core
        .config()
        .node_timeout_ms
        .saturating_mul(FAIL_REPORT_VALIDITY_MULT);
    Ok(count_valid_reports(
        &record.failure_reports,
        core.now_ms(),
        validity_ms,
    ))
}

/// Reports no older than `validity_ms` at `now_ms`.
fn count_valid_reports(reports: &[FailureReport], now_ms: u64, validity_ms: u64) -> usize {
    reports
        .iter()
        .filter(|report| now_ms.saturating_sub(report.time_ms) <= validity_ms)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::testing::{core, id};

    #[test]
    fn count_failure_reports_counts_only_reports_within_validity() {
        let reports: Vec<FailureReport> = [100, 500, 1_000]
            .into_iter()
            .map(|time_ms| FailureReport {
                reporter: id(time_ms as u8),
                time_ms,
            })
            .collect();
        assert_eq!(count_valid_reports(&reports, 1_100, 600), 2);
        assert_eq!(count_valid_reports(&reports, 1_000, 900), 3);
        assert_eq!(count_valid_reports(&reports, 0, 0), 3);
        let core = core(0xaa);
        assert_eq!(count_failure_reports(&core, &id(0xbb)), Ok(0));
        assert_eq!(
            count_failure_reports(&core, &id(0x02)),
            Err(ViewError::UnknownNode(id(0x02)))
        );
    }
}
