output "queue_urls" {
  description = "Queue URLs by base name (submissions, finalize, anchor), as SEQ_<NAME>_QUEUE_URL in localstack/resources.py's resources.env."
  value       = { for q, r in aws_sqs_queue.main : q => r.url }
}

output "dlq_urls" {
  description = "Dead-letter queue URLs by base name."
  value       = { for q, r in aws_sqs_queue.dlq : q => r.url }
}

output "table_names" {
  description = "DynamoDB table names by base name."
  value       = { for t, r in aws_dynamodb_table.t : t => r.name }
}

output "bucket_names" {
  description = "S3 bucket names by base name."
  value       = { for b, r in aws_s3_bucket.b : b => r.bucket }
}

output "function_names" {
  description = "Lambda function names by function (verify, tick, finalize, anchor, epoch-manager, proof)."
  value       = { for f, r in aws_lambda_function.fn : f => r.function_name }
}

output "function_role_arns" {
  description = "Execution role per function."
  value       = { for f, r in aws_iam_role.fn : f => r.arn }
}

output "signer_key_arns" {
  description = "KMS signing key per signer (anchor, epoch-manager) when signer_backend = kms. Derive each Ethereum address from its public key (aws kms get-public-key) and give it its role on chain."
  value       = { for f, k in aws_kms_key.signer : f => k.arn }
}

output "signer_secret_arns" {
  description = "Secrets Manager secret per signer when signer_backend = secrets_manager (fill them, then set signer_secret_ready = true)."
  value       = { for f, s in aws_secretsmanager_secret.signer : f => s.arn }
}

output "ingress_host_key_secret_arn" {
  description = "Secret the ingress reads as INGRESS_KEY (fill it before the service can start)."
  value       = local.ingress_key_secret_arn
}

output "ingress_dns_name" {
  description = "NLB DNS name; collectors dial /dns4/<this>/tcp/9100/p2p/<peer id> (and /udp/9100/quic-v1)."
  value       = aws_lb.ingress.dns_name
}

output "ingress_multiaddrs" {
  description = "Multiaddrs without the /p2p/<peer id> suffix (print the peer id with `sequencer-ingress --key-file K --print-peer-id`)."
  value = concat(
    ["/dns4/${aws_lb.ingress.dns_name}/tcp/9100"],
    var.ingress.quic ? ["/dns4/${aws_lb.ingress.dns_name}/udp/9100/quic-v1"] : [],
  )
}

output "proof_url" {
  description = "Function URL of the proof API (null while proof.enabled = false). With proof.access = \"public\" it answers CloudFront only: use status_url."
  value       = var.proof.enabled ? aws_lambda_function_url.proof[0].function_url : null
}

output "status_url" {
  description = "Where the status page and proof API are read: the CloudFront URL with proof.access = \"public\", the function URL (SigV4-signed requests) with \"iam\"; null while proof.enabled = false. The page is at /status, the API under /v1/."
  value       = local.proof_public ? "https://${aws_cloudfront_distribution.proof[0].domain_name}/" : (var.proof.enabled ? aws_lambda_function_url.proof[0].function_url : null)
}

output "proof_reader_policy_json" {
  description = "With proof.access = \"iam\": an IAM policy letting its holder read the proof API and status page through the function URL (attach it to the readers' role or user). Null otherwise."
  value = var.proof.enabled && var.proof.access == "iam" && var.proof.auth_type == "AWS_IAM" ? jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "ReadProofApi"
      Effect    = "Allow"
      Action    = "lambda:InvokeFunctionUrl"
      Resource  = aws_lambda_function.fn["proof"].arn
      Condition = { StringEquals = { "lambda:FunctionUrlAuthType" = "AWS_IAM" } }
    }]
  }) : null
}

output "ipfs_api_url" {
  description = "IPFS_API_URL the functions use."
  value       = local.ipfs_api_url
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "anchor_group_id" {
  description = "ANCHOR_GROUP_ID: the anchor FIFO message group (one per signing key)."
  value       = local.anchor_group_id
}

output "snapshotter_kit" {
  description = "What a snapshotter operator needs to join this market (docs/run-a-market.md). The peer id is not known to Terraform (the host key is a secret): `command` prints the whole kit, sequencers.json entry included, once PEER_ID and the public RPC URL are filled in."
  value = {
    PROTOCOL_STATE_CONTRACT = var.protocol_state_address
    DATA_MARKET_CONTRACT    = var.data_market_address
    CHAIN_ID                = var.chain_id
    sequencer_multiaddrs    = [for m in concat(["/dns4/${aws_lb.ingress.dns_name}/tcp/9100"], var.ingress.quic ? ["/dns4/${aws_lb.ingress.dns_name}/udp/9100/quic-v1"] : []) : "${m}/p2p/<PEER_ID>"]
    collector_port          = 50051
    command                 = "seqctl market snapshotter-env --rpc-url \"$RPC_URL\" --public-rpc-url \"$POWERLOOM_RPC_URL\" --protocol-state ${var.protocol_state_address} --market ${var.data_market_address} --sequencer-multiaddr /dns4/${aws_lb.ingress.dns_name}/tcp/9100/p2p/$PEER_ID"
  }
}
