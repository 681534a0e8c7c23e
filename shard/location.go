package shard

import (
	"fmt"
	"os"
	"strings"
)

// Location is where a dataset lives: s3://bucket/prefix, or a local
// directory (file:///path or a plain path).
type Location struct {
	S3     bool
	Bucket string // S3 only
	Prefix string // S3: key prefix within the bucket
	Dir    string // local only
}

func (l Location) String() string {
	if l.S3 {
		return "s3://" + JoinKey(l.Bucket, l.Prefix)
	}
	return l.Dir
}

// ParseLocation parses "s3://bucket/prefix", "file:///dir" or a directory.
func ParseLocation(s string) (Location, error) {
	switch {
	case strings.HasPrefix(s, "s3://"):
		rest := strings.TrimPrefix(s, "s3://")
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return Location{}, fmt.Errorf("location %q: no bucket", s)
		}
		prefix = strings.Trim(prefix, "/")
		if prefix != "" {
			if err := ValidKey(prefix); err != nil {
				return Location{}, fmt.Errorf("location %q: %w", s, err)
			}
		}
		return Location{S3: true, Bucket: bucket, Prefix: prefix}, nil
	case strings.HasPrefix(s, "file://"):
		s = strings.TrimPrefix(s, "file://")
	case strings.Contains(s, "://"):
		return Location{}, fmt.Errorf("location %q: want s3://bucket/prefix, file:///dir or a directory", s)
	}
	if s == "" {
		return Location{}, fmt.Errorf("empty location")
	}
	return Location{Dir: s}, nil
}

// S3ConfigFromEnv fills the S3 settings that are not set from the
// environment: LOOM_S3_ENDPOINT (or AWS_ENDPOINT_URL), LOOM_S3_ACCESS_KEY
// (or AWS_ACCESS_KEY_ID), LOOM_S3_SECRET_KEY (or AWS_SECRET_ACCESS_KEY) and
// LOOM_S3_REGION (or AWS_REGION).
func S3ConfigFromEnv(c S3Config) S3Config {
	pick := func(cur string, names ...string) string {
		if cur != "" {
			return cur
		}
		for _, n := range names {
			if v := os.Getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	c.Endpoint = pick(c.Endpoint, "LOOM_S3_ENDPOINT", "AWS_ENDPOINT_URL")
	c.AccessKey = pick(c.AccessKey, "LOOM_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
	c.SecretKey = pick(c.SecretKey, "LOOM_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
	c.Region = pick(c.Region, "LOOM_S3_REGION", "AWS_REGION")
	return c
}

// Open returns the store and the key prefix of a location. For S3, cfg
// supplies the endpoint and credentials (its Bucket is replaced by the
// location's).
func (l Location) Open(cfg S3Config) (ObjectStore, string, error) {
	if !l.S3 {
		s, err := NewFSStore(l.Dir)
		return s, "", err
	}
	cfg.Bucket = l.Bucket
	s, err := NewS3Store(cfg)
	return s, l.Prefix, err
}
