package consensus

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func TestAdvertiseFor(t *testing.T) {
	bound := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7001}
	wild := &net.TCPAddr{IP: net.IPv4zero, Port: 7001}
	tests := []struct {
		bound     *net.TCPAddr
		advertise string
		want      string
		wantErr   string
	}{
		{bound, "", "127.0.0.1:7001", ""},
		{wild, "", "", "wildcard"},
		{wild, "coord-0.coord.loom.svc:7000", "coord-0.coord.loom.svc:7000", ""},
		{wild, "coord-0.coord.loom.svc:0", "coord-0.coord.loom.svc:7001", ""},
		{bound, "localhost:0", "localhost:7001", ""},
		{bound, "10.0.0.5:7000", "10.0.0.5:7000", ""},
		{bound, "coord-0", "", "want host:port"},
		{bound, ":7000", "", "empty host"},
		{bound, "0.0.0.0:7000", "", "wildcard"},
		{bound, "host:port", "", "bad port"},
		{bound, "host:70000", "", "bad port"},
		{bound, "host:+070", "host:70", ""},
	}
	for _, tc := range tests {
		got, err := advertiseFor(tc.bound, tc.advertise)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("advertiseFor(%v, %q) = %q, %v; want error containing %q", tc.bound, tc.advertise, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("advertiseFor(%v, %q) = %q, %v; want %q", tc.bound, tc.advertise, got, err, tc.want)
		}
	}
}

func TestBootstrapConfiguration(t *testing.T) {
	p := func(id, addr string) Peer { return Peer{ID: id, Addr: addr} }
	tests := []struct {
		self    string
		peers   []Peer
		want    []raft.Server // nil when an error is wanted
		wantErr string
	}{
		{"a", []Peer{p("a", "")}, []raft.Server{{Suffrage: raft.Voter, ID: "a", Address: "self:1"}}, ""},
		{"b", []Peer{p("a", "a:1"), p("b", "b:1"), p("c", "c:1")}, []raft.Server{
			{Suffrage: raft.Voter, ID: "a", Address: "a:1"},
			{Suffrage: raft.Voter, ID: "b", Address: "b:1"},
			{Suffrage: raft.Voter, ID: "c", Address: "c:1"}}, ""},
		{"a", []Peer{p("a", "a:1"), p("b", "b:1")}, nil, "odd number"},
		{"a", []Peer{p("b", "b:1")}, nil, "does not list this node"},
		{"a", []Peer{p("a", "a:1"), p("a", "b:1"), p("c", "c:1")}, nil, "duplicate ID"},
		{"a", []Peer{p("a", "a:1"), p("", "b:1"), p("c", "c:1")}, nil, "Bootstrap[1]: empty ID"},
		{"a", []Peer{p("a", "a:1"), p("b", ""), p("c", "c:1")}, nil, "Bootstrap[1] (b): empty Addr"},
		{"a", []Peer{p("a", "a:1"), p("b", "a:1"), p("c", "c:1")}, nil, "also a's"},
	}
	for _, tc := range tests {
		conf, err := bootstrapConfiguration(tc.self, "self:1", tc.peers)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("bootstrapConfiguration(%s, %v) = %v, %v; want error containing %q", tc.self, tc.peers, conf, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("bootstrapConfiguration(%s, %v): %v", tc.self, tc.peers, err)
			continue
		}
		if len(conf.Servers) != len(tc.want) {
			t.Errorf("bootstrapConfiguration(%s, %v) = %v, want %v", tc.self, tc.peers, conf.Servers, tc.want)
			continue
		}
		for i := range tc.want {
			if conf.Servers[i] != tc.want[i] {
				t.Errorf("bootstrapConfiguration(%s, %v)[%d] = %v, want %v", tc.self, tc.peers, i, conf.Servers[i], tc.want[i])
			}
		}
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		cfg     Config
		wantErr string
	}{
		{Config{DataDir: dir, BindAddr: "127.0.0.1:0"}, "Config.ID is empty"},
		{Config{ID: "a", BindAddr: "127.0.0.1:0"}, "Config.DataDir is empty"},
		{Config{ID: "a", DataDir: dir, BindAddr: "0.0.0.0:0"}, "AdvertiseAddr is empty"},
		{Config{ID: "a", DataDir: dir, BindAddr: "127.0.0.1:0", Bootstrap: []Peer{{ID: "b", Addr: "b:1"}}}, "does not list this node"},
	}
	for _, tc := range tests {
		n, err := Open(tc.cfg, nopFSM{})
		if err == nil {
			n.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Open(%+v) error = %v, want one containing %q", tc.cfg, err, tc.wantErr)
		}
	}
}

func FuzzAdvertiseFor(f *testing.F) {
	for _, s := range []string{"", "coord-0.coord.loom.svc:7000", "localhost:0", "[::1]:7000", "0.0.0.0:1", ":7000", "host", "host:99999", "[::]:0"} {
		f.Add(s)
	}
	bound := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7001}
	f.Fuzz(func(t *testing.T, advertise string) {
		got, err := advertiseFor(bound, advertise)
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(got)
		if err != nil || host == "" {
			t.Fatalf("advertiseFor(%q) = %q, not host:port (%v)", advertise, got, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 || strconv.Itoa(p) != port {
			t.Fatalf("advertiseFor(%q) = %q, port %q not dialable", advertise, got, port)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			t.Fatalf("advertiseFor(%q) = %q, a wildcard", advertise, got)
		}
	})
}
