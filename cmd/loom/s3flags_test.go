package main

import (
	"strings"
	"testing"
)

// TestS3FlagsConfig checks how the --s3-* flags and the environment resolve
// into a store configuration, the same for every command.
func TestS3FlagsConfig(t *testing.T) {
	for _, c := range []struct {
		flags      s3Flags
		env        map[string]string
		endpoint   string // want
		secure     bool
		access     string
		region     string
		errContain string
	}{
		{flags: s3Flags{endpoint: "minio:9000"}, endpoint: "https://minio:9000", secure: true},
		{flags: s3Flags{endpoint: "minio:9000", insecure: true}, endpoint: "http://minio:9000"},
		{flags: s3Flags{endpoint: "http://127.0.0.1:7070"}, endpoint: "http://127.0.0.1:7070"},
		{flags: s3Flags{endpoint: "https://s3.amazonaws.com"}, endpoint: "https://s3.amazonaws.com", secure: true},
		{flags: s3Flags{endpoint: "https://s3.amazonaws.com", insecure: true}, errContain: "contradicts"},
		{flags: s3Flags{endpoint: "ftp://x:21"}, errContain: "want http://, https:// or host:port"},
		{flags: s3Flags{endpoint: "minio:9000/bucket"}, errContain: "without a path"},
		{env: map[string]string{"LOOM_S3_ENDPOINT": "loom-s3:7070"}, flags: s3Flags{insecure: true}, endpoint: "http://loom-s3:7070"},
		{env: map[string]string{"AWS_ENDPOINT_URL": "https://aws:443", "AWS_ACCESS_KEY_ID": "AK", "AWS_REGION": "eu-west-1"},
			endpoint: "https://aws:443", secure: true, access: "AK", region: "eu-west-1"},
		{env: map[string]string{"LOOM_S3_ENDPOINT": "http://env:1", "LOOM_S3_ACCESS_KEY": "envkey"},
			flags: s3Flags{endpoint: "http://flag:2", accessKey: "flagkey", region: "r1"}, endpoint: "http://flag:2", access: "flagkey", region: "r1"},
		{}, // nothing set: no endpoint, the caller decides
	} {
		for _, k := range []string{"LOOM_S3_ENDPOINT", "AWS_ENDPOINT_URL", "LOOM_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "LOOM_S3_REGION", "AWS_REGION"} {
			t.Setenv(k, c.env[k])
		}
		cfg, err := c.flags.config()
		call := "config(" + strings.TrimSpace(strings.ReplaceAll(sprint(c.flags), "  ", " ")) + ", env " + sprint(c.env) + ")"
		if c.errContain != "" {
			if err == nil || !strings.Contains(err.Error(), c.errContain) {
				t.Errorf("%s: err %v, want one containing %q", call, err, c.errContain)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", call, err)
			continue
		}
		if cfg.Endpoint != c.endpoint || cfg.Secure != c.secure || cfg.AccessKey != c.access || cfg.Region != c.region {
			t.Errorf("%s\n got endpoint=%q secure=%v access=%q region=%q\nwant endpoint=%q secure=%v access=%q region=%q",
				call, cfg.Endpoint, cfg.Secure, cfg.AccessKey, cfg.Region, c.endpoint, c.secure, c.access, c.region)
		}
	}
}
