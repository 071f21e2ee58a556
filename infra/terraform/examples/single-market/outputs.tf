output "ingress_multiaddrs" {
  description = "Where collectors dial (append /p2p/<peer id>)."
  value       = module.sequencer.ingress_multiaddrs
}

output "queue_urls" {
  description = "Queue URLs."
  value       = module.sequencer.queue_urls
}

output "signer_key_arns" {
  description = "KMS signing keys to fund and register on chain."
  value       = module.sequencer.signer_key_arns
}

output "ingress_host_key_secret_arn" {
  description = "Put the ingress host key here before the service can start."
  value       = module.sequencer.ingress_host_key_secret_arn
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = module.sequencer.dashboard_name
}

output "proof_url" {
  description = "Proof API URL (when enabled)."
  value       = module.sequencer.proof_url
}

output "status_url" {
  description = "Status page (/status) and proof API (/v1/): CloudFront with proof_access = \"public\", the function URL with \"iam\"."
  value       = module.sequencer.status_url
}

output "proof_reader_policy_json" {
  description = "With proof_access = \"iam\": the IAM policy that lets a reader call the proof URL."
  value       = module.sequencer.proof_reader_policy_json
}
