variable "region" {
  description = "AWS region."
  type        = string
}

variable "prefix" {
  description = "Name prefix of this market's resources (SEQ_PREFIX)."
  type        = string
  default     = "seq"
}

variable "data_market_address" {
  description = "DATA_MARKET_ADDRESS."
  type        = string
}

variable "protocol_state_address" {
  description = "PROTOCOL_STATE_ADDRESS."
  type        = string
}

variable "chain_id" {
  description = "CHAIN_ID of the protocol chain."
  type        = number
}

variable "rpc_url" {
  description = "RPC_URL of the protocol chain."
  type        = string
  sensitive   = true
}

variable "lambda_zip_dir" {
  description = "Where infra/build.sh left the zips (<repo>/target/lambda)."
  type        = string
  default     = "../../../../target/lambda"
}

variable "ingress_image" {
  description = "Ingress image URI (ECR), pushed by infra/build.sh --push."
  type        = string
}

variable "vpc_id" {
  description = "VPC."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets for the NLB."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Private subnets (with NAT) for the ingress tasks."
  type        = list(string)
}

variable "ipfs_api_url" {
  description = "Kubo RPC base URL (your node or a pinning service's Kubo-compatible RPC)."
  type        = string
}

variable "alarm_email" {
  description = "Email subscribed to the alarm topic (empty: none)."
  type        = string
  default     = ""
}

variable "epoch_manager_enabled" {
  description = "Deploy the epoch-manager function (needs its zip)."
  type        = bool
  default     = true
}

variable "proof_enabled" {
  description = "Deploy the proof function and its URL (needs its zip)."
  type        = bool
  default     = false
}

variable "proof_access" {
  description = "Who reads the proof API and status page: \"iam\" (SigV4-signed requests to the function URL) or \"public\" (CloudFront with caching of final answers and a WAF rate limit). docs/deploy.md."
  type        = string
  default     = "iam"
}
