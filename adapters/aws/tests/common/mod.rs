//! Helpers of the AWS adapter tests: the SDK configuration, probes of SQS and DynamoDB that skip
//! loudly (or fail under `SEQ_REQUIRE_SERVICES=1`); the generic ones are the shared test kit's.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

pub use sequencer_testsupport::net::{dead_endpoint, scripted_http, unique};

/// Whether a service-dependent test should run: a loud skip (false) when the service is missing,
/// a panic under SEQ_REQUIRE_SERVICES=1.
pub fn require(what: &str, available: bool) -> bool {
    sequencer_testsupport::require_service(what, available)
}

/// The SDK configuration from the environment (scripts/env.sh points it at the emulators).
pub async fn aws() -> aws_config::SdkConfig {
    sequencer_aws::aws_sdk_config().await
}

/// An SDK configuration with every endpoint at `endpoint` and no retries (failure tests).
pub async fn aws_at(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .load()
        .await
}

/// Whether SQS answers at the configured endpoint.
pub async fn sqs_up(conf: &aws_config::SdkConfig) -> bool {
    let c = aws_sdk_sqs::Client::new(conf);
    matches!(
        tokio::time::timeout(
            Duration::from_secs(5),
            c.list_queues().max_results(1).send()
        )
        .await,
        Ok(Ok(_))
    )
}

/// Whether DynamoDB answers at the configured endpoint.
pub async fn dynamodb_up(conf: &aws_config::SdkConfig) -> bool {
    let c = aws_sdk_dynamodb::Client::new(conf);
    matches!(
        tokio::time::timeout(Duration::from_secs(5), c.list_tables().limit(1).send()).await,
        Ok(Ok(_))
    )
}
