# ------------------------------------------------------------------------------ public status endpoint
#
# proof.access = "public": the proof API and status page for anyone, read-only, through
# CloudFront. The function URL stays AWS_IAM; CloudFront signs each request to it (origin access
# control) and the function accepts them from this distribution only. CloudFront keeps what the
# API marks final (anchored answers: `Cache-Control: public, max-age=31536000, immutable`), so a
# popular proof is read from the edge, and keeps nothing marked `no-store` (open epochs, errors).
# A WAF rate-based rule blocks an address past proof.rate_limit requests per 5 minutes; the
# function's reserved concurrency bounds what gets through. docs/deploy.md says how to open it.

locals {
  proof_public = var.proof.enabled && var.proof.access == "public"
  # The function URL is https://<id>.lambda-url.<region>.on.aws/: CloudFront wants the host.
  proof_url_host = var.proof.enabled ? trimsuffix(trimprefix(aws_lambda_function_url.proof[0].function_url, "https://"), "/") : ""
}

resource "aws_cloudfront_origin_access_control" "proof" {
  count                             = local.proof_public ? 1 : 0
  name                              = "${var.prefix}-proof"
  description                       = "CloudFront signs (SigV4) its requests to the proof function URL, which takes no others."
  origin_access_control_origin_type = "lambda"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_cache_policy" "proof" {
  count   = local.proof_public ? 1 : 0
  name    = "${var.prefix}-proof"
  comment = "Cache what the proof API marks final (max-age, immutable) and nothing it marks no-store."
  # No TTL of CloudFront's own: the origin's Cache-Control decides.
  min_ttl     = 0
  default_ttl = 0
  max_ttl     = 31536000
  parameters_in_cache_key_and_forwarded_to_origin {
    cookies_config {
      cookie_behavior = "none"
    }
    headers_config {
      header_behavior = "none"
    }
    # ?before=&limit= page the epoch list.
    query_strings_config {
      query_string_behavior = "all"
    }
    enable_accept_encoding_gzip   = true
    enable_accept_encoding_brotli = true
  }
}

resource "aws_wafv2_web_acl" "proof" {
  count = local.proof_public ? 1 : 0
  #checkov:skip=CKV_AWS_192:No Log4j lookups to block: the origin is our Rust proof function, which reads no header and logs no request text.
  #checkov:skip=CKV_AWS_175:The rate-based rule is in rule_json (below), which checkov does not read.
  #checkov:skip=CKV2_AWS_31:WAF logging needs a Firehose or log group named aws-waf-logs-*; the rate rule's CloudWatch metrics and sampled requests are on, and the function logs each request.
  # A web ACL for CloudFront lives in us-east-1, wherever the rest of the module is.
  region      = "us-east-1"
  name        = "${var.prefix}-proof"
  description = "Rate limit of the public proof API and status page."
  scope       = "CLOUDFRONT"
  default_action {
    allow {}
  }
  # The rule in WAF's own JSON (rule_json): the provider's nested `statement` blocks are typed
  # loosely in the schema the check reads (a recursive type), the API's JSON is not.
  rule_json = jsonencode([{
    Name     = "rate-per-address"
    Priority = 0
    Action   = { Block = {} }
    Statement = {
      RateBasedStatement = {
        Limit               = var.proof.rate_limit
        EvaluationWindowSec = 300
        AggregateKeyType    = "IP"
      }
    }
    VisibilityConfig = {
      CloudWatchMetricsEnabled = true
      MetricName               = "${var.prefix}-proof-rate"
      SampledRequestsEnabled   = true
    }
  }])
  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.prefix}-proof"
    sampled_requests_enabled   = true
  }
  tags = local.tags
}

resource "aws_cloudfront_distribution" "proof" {
  count = local.proof_public ? 1 : 0
  #checkov:skip=CKV_AWS_86:Access logs need an S3 bucket with ACLs enabled; the function logs every request it answers and the WAF keeps sampled requests.
  #checkov:skip=CKV_AWS_310:One origin (the function URL); an origin group has nothing to fail over to.
  #checkov:skip=CKV_AWS_174:The default *.cloudfront.net certificate; CloudFront then negotiates TLS 1.2+ with current clients. A custom domain brings its own ACM certificate and minimum_protocol_version.
  #checkov:skip=CKV2_AWS_42:The default *.cloudfront.net certificate (see CKV_AWS_174).
  #checkov:skip=CKV2_AWS_32:The API sets its own headers (JSON, Cache-Control); the status page is served by the same function with its own.
  #checkov:skip=CKV_AWS_374:Proofs are read worldwide by snapshotters: no geo restriction.
  #checkov:skip=CKV2_AWS_47:No Log4j lookups to block (see the web ACL's CKV_AWS_192).
  enabled = true
  comment = "${var.prefix}: public read-only proof API and status page"
  # `/` is the status page already; the root object makes that explicit.
  default_root_object = "status"
  is_ipv6_enabled     = true
  http_version        = "http2and3"
  price_class         = var.proof.price_class
  web_acl_id          = aws_wafv2_web_acl.proof[0].arn
  origin {
    origin_id                = "proof"
    domain_name              = local.proof_url_host
    origin_access_control_id = aws_cloudfront_origin_access_control.proof[0].id
    custom_origin_config {
      http_port              = 80
      https_port             = 443
      origin_protocol_policy = "https-only"
      origin_ssl_protocols   = ["TLSv1.2"]
    }
  }
  default_cache_behavior {
    target_origin_id       = "proof"
    viewer_protocol_policy = "redirect-to-https"
    # Read-only: GET, HEAD and CORS preflight. (OAC to a function URL would need the body's hash
    # for POST/PUT; the API has none.)
    allowed_methods = ["GET", "HEAD", "OPTIONS"]
    cached_methods  = ["GET", "HEAD"]
    cache_policy_id = aws_cloudfront_cache_policy.proof[0].id
    compress        = true
  }
  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }
  viewer_certificate {
    cloudfront_default_certificate = true
  }
  tags = local.tags
}

# The function URL takes this distribution's signed requests (and no one else's: it stays
# AWS_IAM). AWS asks for both actions on a function URL called through CloudFront.
resource "aws_lambda_permission" "proof_cloudfront" {
  for_each               = local.proof_public ? toset(["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"]) : toset([])
  statement_id           = each.key == "lambda:InvokeFunctionUrl" ? "CloudFrontProofUrl" : "CloudFrontProofInvoke"
  action                 = each.key
  function_name          = aws_lambda_function.fn["proof"].function_name
  principal              = "cloudfront.amazonaws.com"
  source_arn             = aws_cloudfront_distribution.proof[0].arn
  function_url_auth_type = each.key == "lambda:InvokeFunctionUrl" ? "AWS_IAM" : null
}
