terraform {
  # optional() object attributes with defaults need 1.3; cross-variable validation needs 1.9.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # aws_lambda_event_source_mapping.scaling_config, aws_scheduler_schedule and
      # provided.al2023 need >= 5; the schema check in ../../check runs against 6.25.0.
      version = ">= 6.0"
    }
  }
}
