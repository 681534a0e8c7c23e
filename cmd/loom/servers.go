package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/internal/etcdserver"
	"github.com/loomtrain/loom/internal/s3server"
	"github.com/loomtrain/loom/shard"
)

func init() {
	rootCmd.AddCommand(newEtcdCmd())
	rootCmd.AddCommand(newS3Cmd())
}

func newEtcdCmd() *cobra.Command {
	var dir, client, peer, name string
	c := &cobra.Command{
		Use:   "etcd",
		Short: "Run the embedded etcd (a single-member worker registry) on its own",
		Long: `Runs the etcd that loom dev embeds, as a process of its own: one member, its
data under --data-dir (reopened with its keys on restart), serving clients on
--client-addr and its peer port on --peer-addr. The addresses are also what it
advertises, so give the machine's own address (not 0.0.0.0) when workers and
coordinators on other machines reach it. It is the real etcd server
(go.etcd.io/etcd/server/v3) without TLS or authentication; for production run
an etcd cluster of three or five members of your own.

Once it serves it prints the line a shell needs to reach it
(export LOOM_ETCD_ENDPOINTS=...), then "etcd serving clients at URL"; it serves Prometheus metrics at /metrics on
the client address, and stops on Ctrl-C or SIGTERM.

Example:
  loom etcd --data-dir /var/lib/loom/etcd --client-addr 10.0.0.5:2379 --peer-addr 10.0.0.5:2380`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range []struct{ flag, v string }{{"--client-addr", client}, {"--peer-addr", peer}} {
				if err := advertisable(a.flag, a.v); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := etcdserver.StartWithOptions(dir, etcdserver.Options{Name: name, Logger: slog.Default(), ClientAddr: client, PeerAddr: peer})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			printExports(out, s.Env())
			fmt.Fprintf(out, "etcd serving clients at %s (peer %s, data in %s)\n", s.Endpoints[0], s.PeerURL, s.Dir)
			<-ctx.Done()
			fmt.Fprintln(out, "etcd stopping")
			return s.Close()
		},
	}
	fl := c.Flags()
	fl.StringVar(&dir, "data-dir", "loom-etcd", "data directory (created if missing)")
	fl.StringVar(&client, "client-addr", "127.0.0.1:2379", "host:port clients (coordinators, workers) connect to")
	fl.StringVar(&peer, "peer-addr", "127.0.0.1:2380", "host:port of the member's peer URL")
	fl.StringVar(&name, "name", "loom", "member name")
	return c
}

func newS3Cmd() *cobra.Command {
	var dir, addr string
	var buckets []string
	c := &cobra.Command{
		Use:   "s3",
		Short: "Run the embedded S3-compatible server (development only: no authentication) on its own",
		Long: `Runs the S3-compatible server that loom dev embeds (gofakes3 on a directory), as
a process of its own: objects under --data-dir (buckets are directories of
--data-dir/buckets), served on --addr, with each --bucket created if missing.

It checks NO credentials and no signatures: anyone who reaches --addr reads and
writes everything. Keep it on a trusted network, for development and tests;
use a real store (MinIO, Ceph RGW, versitygw, AWS S3) for anything else.

Clients are configured as against a real store, with the same environment
every loom command reads: the keys it reports are LOOM_S3_ACCESS_KEY and
LOOM_S3_SECRET_KEY (or AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) from its
environment, and loom dev's when those are unset. Once it serves it prints the
export lines a shell needs (LOOM_S3_ENDPOINT, the access key, and the secret
only when it is loom dev's), then "s3 serving at URL", and stops on Ctrl-C or
SIGTERM.

Example:
  loom s3 --data-dir /var/lib/loom/s3 --addr 127.0.0.1:9000 --bucket loom`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := advertisable("--addr", addr); err != nil {
				return err
			}
			env := shard.S3ConfigFromEnv(shard.S3Config{})
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := s3server.StartWithOptions(s3server.Options{Dir: dir, Addr: addr, AccessKey: env.AccessKey, SecretKey: env.SecretKey})
			if err != nil {
				return err
			}
			for _, b := range buckets {
				if err := s.CreateBucket(b); err != nil {
					s.Close()
					return fmt.Errorf("--bucket %s: %w", b, err)
				}
			}
			out := cmd.OutOrStdout()
			printExports(out, s.Env())
			fmt.Fprintf(out, "s3 serving at %s (buckets %v, data in %s; no authentication)\n", s.Endpoint, buckets, dir)
			<-ctx.Done()
			fmt.Fprintln(out, "s3 stopping")
			return s.Close()
		},
	}
	fl := c.Flags()
	fl.StringVar(&dir, "data-dir", "loom-s3", "directory the objects live in (created if missing)")
	fl.StringVar(&addr, "addr", "127.0.0.1:9000", "host:port to serve on (also the endpoint it prints)")
	fl.StringSliceVar(&buckets, "bucket", nil, "bucket to create if missing (repeatable)")
	return c
}

// printExports writes each NAME=value as a shell export line.
func printExports(w io.Writer, env []string) {
	for _, e := range env {
		fmt.Fprintf(w, "export %s\n", e)
	}
}

// advertisable checks that flag's value v is host:port with a host others
// can dial: the address is also the one the server reports to clients.
func advertisable(flag, v string) error {
	host, _, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%s %q: want host:port: %v", flag, v, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%s %q: the address is also what clients are told to dial; name this machine's address instead of %q", flag, v, host)
	}
	return nil
}
