//! CLUSTER COUNT-FAILURE-REPORTS.

use crate::core::failure::is_failure_report_valid;
use crate::core::node::{FailureReport, NodeId};
use crate::core::Core;
use crate::views::ViewError;

/// CLUSTER COUNT-FAILURE-REPORTS `<id>`: the failure reports about `id` that failure
/// detection still counts as valid ([`is_failure_report_valid`]), whoever sent them (as
/// Redis counts them).
pub fn count_failure_reports(core: &Core, id: &NodeId) -> Result<usize, ViewError> {
    let record = core.node(id).ok_or(ViewError::UnknownNode(*id))?;
    Ok(count_valid_reports(
        &record.failure_reports,
        core.now_ms(),
        core.config().node_timeout_ms,
    ))
}

/// The reports of `reports` valid at `now_ms` under `node_timeout_ms`.
fn count_valid_reports(reports: &[FailureReport], now_ms: u64, node_timeout_ms: u64) -> usize {
    reports
        .iter()
        .filter(|report| is_failure_report_valid(report, now_ms, node_timeout_ms))
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
        assert_eq!(count_valid_reports(&reports, 1_100, 300), 2);
        assert_eq!(count_valid_reports(&reports, 1_000, 450), 3);
        assert_eq!(count_valid_reports(&reports, 0, 0), 3);
        assert_eq!(count_valid_reports(&reports, u64::MAX, u64::MAX), 3);
        let core = core(0xaa);
        assert_eq!(count_failure_reports(&core, &id(0xbb)), Ok(0));
        assert_eq!(
            count_failure_reports(&core, &id(0x02)),
            Err(ViewError::UnknownNode(id(0x02)))
        );
    }
}
