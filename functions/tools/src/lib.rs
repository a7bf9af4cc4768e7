//! leadscore-tools: what only the people who write rules run, on their machine: the numbers
//! of `report` and `compare`, the rule tests of `test`, and `explain`. The `leadscore`
//! program links it; the Lambda functions never do.

pub mod explain;
pub mod report;
pub mod ruletest;
