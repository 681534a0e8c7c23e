package grpcauth

import (
	"context"
	"crypto/tls"
	"testing"
)

func TestBearer(t *testing.T) {
	md, err := Bearer{Token: "s3cret"}.GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer s3cret" {
		t.Fatalf("Bearer{s3cret}.GetRequestMetadata() = %v, %v; want authorization: Bearer s3cret", md, err)
	}
	for _, tc := range []struct {
		token string
		tls   *tls.Config
		want  int
	}{
		{"", nil, 1},
		{"t", nil, 2},
		{"t", &tls.Config{}, 2},
	} {
		if got := len(DialOptions(tc.token, tc.tls)); got != tc.want {
			t.Errorf("len(DialOptions(%q, tls=%v)) = %d, want %d", tc.token, tc.tls != nil, got, tc.want)
		}
	}
}
