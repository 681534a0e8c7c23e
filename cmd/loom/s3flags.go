package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/loomtrain/loom/shard"
)

// s3Flags are the object-storage settings of every command that talks to
// S3 (loom data, loom worker, loom coordinator), with one meaning
// everywhere:
//
//   - --s3-endpoint is a URL (http:// or https://) or host:port; host:port
//     means HTTPS unless --s3-insecure is set;
//   - every setting left empty falls back to the environment: LOOM_S3_ENDPOINT,
//     LOOM_S3_ACCESS_KEY, LOOM_S3_SECRET_KEY, LOOM_S3_REGION, then the AWS_*
//     names (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
//     AWS_REGION); the region defaults to us-east-1.
//
// Secrets are best passed through the environment (flags show in ps); they
// are never logged (shard.S3Config's String redacts them).
type s3Flags struct {
	endpoint, accessKey, secretKey, region string
	insecure                               bool
}

// register adds the --s3-* flags to fs; endpointUse is the help text of
// --s3-endpoint, which says what the command uses the storage for.
func (f *s3Flags) register(fs *pflag.FlagSet, endpointUse string) {
	fs.StringVar(&f.endpoint, "s3-endpoint", "", endpointUse+"; a URL or host:port (HTTPS unless --s3-insecure); env LOOM_S3_ENDPOINT or AWS_ENDPOINT_URL")
	fs.BoolVar(&f.insecure, "s3-insecure", false, "plain HTTP to a host:port --s3-endpoint")
	fs.StringVar(&f.accessKey, "s3-access-key", "", "S3 access key (env LOOM_S3_ACCESS_KEY or AWS_ACCESS_KEY_ID)")
	fs.StringVar(&f.secretKey, "s3-secret-key", "", "S3 secret key; prefer the env LOOM_S3_SECRET_KEY or AWS_SECRET_ACCESS_KEY")
	fs.StringVar(&f.region, "s3-region", "", "S3 region (default us-east-1; env LOOM_S3_REGION or AWS_REGION)")
}

// config resolves the flags and the environment into a store
// configuration (Bucket left empty). An empty endpoint stays empty: the
// caller decides whether S3 is required.
func (f *s3Flags) config() (shard.S3Config, error) {
	cfg := shard.S3ConfigFromEnv(shard.S3Config{Endpoint: f.endpoint, AccessKey: f.accessKey, SecretKey: f.secretKey, Region: f.region})
	ep := cfg.Endpoint
	switch {
	case ep == "":
	case strings.HasPrefix(ep, "https://"):
		if f.insecure {
			return shard.S3Config{}, fmt.Errorf("--s3-insecure contradicts the HTTPS endpoint %q: drop one", ep)
		}
		cfg.Secure = true
	case strings.HasPrefix(ep, "http://"):
		cfg.Secure = false
	case strings.Contains(ep, "://"):
		return shard.S3Config{}, fmt.Errorf("--s3-endpoint %q: want http://, https:// or host:port", ep)
	default:
		if strings.ContainsAny(ep, "/?#") {
			return shard.S3Config{}, fmt.Errorf("--s3-endpoint %q: want host:port or a URL without a path", ep)
		}
		if f.insecure {
			cfg.Endpoint = "http://" + ep
		} else {
			cfg.Endpoint = "https://" + ep
			cfg.Secure = true
		}
	}
	return cfg, nil
}

// open resolves a dataset location (s3://bucket/prefix or a directory) to
// a store and key prefix; create makes the bucket if it is missing.
func (f *s3Flags) open(ctx context.Context, where string, create bool) (shard.ObjectStore, string, error) {
	loc, err := shard.ParseLocation(where)
	if err != nil {
		return nil, "", err
	}
	var cfg shard.S3Config
	if loc.S3 {
		if cfg, err = f.config(); err != nil {
			return nil, "", err
		}
	}
	store, prefix, err := loc.Open(cfg)
	if err != nil {
		return nil, "", err
	}
	if s3, ok := store.(*shard.S3Store); ok && create {
		if err := s3.EnsureBucket(ctx); err != nil {
			return nil, "", err
		}
	}
	return store, prefix, nil
}
