package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/loomtrain/loom/coordinator"
)

func init() { rootCmd.AddCommand(newClusterCmd()) }

// newClusterCmd is `loom cluster members|add|remove`: the Raft membership
// of the coordinators, as admin (LOOM_ADMIN_TOKEN or --token-file, or an
// admin certificate).
func newClusterCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "cluster",
		Short: "List, add and remove coordinator nodes (Raft voters), as admin",
		Long: `Changes the coordinators' Raft membership. These calls need the admin role:
the admin token (LOOM_ADMIN_TOKEN, or --token-file) or a certificate proving
spiffe://loom/role/admin. Any node answers; changes go to the leader.

Remove a voter that is gone for good (a dead pod whose volume is lost, a
node added by mistake): every dead voter counts against the quorum, so with
three nodes and a dead fourth voter one more failure leaves no leader.
Removing it restores the margin. A cluster that has already lost its
majority cannot commit a removal; that needs manual Raft recovery.

Example:
  loom cluster members
  loom cluster add c3 coord-3.coord.loom.svc:7000
  loom cluster remove c3`,
	}
	c.AddCommand(newClusterMembersCmd(), newClusterAddCmd(), newClusterRemoveCmd())
	return c
}

func adminFlags(c *cobra.Command) *clientFlags {
	cf := &clientFlags{tokenEnv: "LOOM_ADMIN_TOKEN"}
	cf.register(c)
	return cf
}

func newClusterMembersCmd() *cobra.Command {
	var cf *clientFlags
	c := &cobra.Command{
		Use:   "members",
		Short: "List the Raft servers: ID, Raft and API address, suffrage, leader",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cc, err := cf.dial()
			if err != nil {
				return err
			}
			defer cc.Close()
			ctx, cancel := cf.ctx(cmd.Context())
			defer cancel()
			ms, err := coordinator.NewMembershipClient(cc).Members(ctx)
			if err != nil {
				return rpcError(cf.addr, err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tRAFT\tAPI\tSUFFRAGE\tLEADER")
			for _, m := range ms {
				lead := ""
				if m.Leader {
					lead = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.RaftAddr, orDash(m.APIAddr), m.Suffrage, lead)
			}
			return tw.Flush()
		},
	}
	cf = adminFlags(c)
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newClusterAddCmd() *cobra.Command {
	var (
		cf    *clientFlags
		force bool
	)
	c := &cobra.Command{
		Use:   "add ID RAFT-ADDR",
		Short: "Add a coordinator node as a Raft voter (start it first; it is refused if nothing answers at RAFT-ADDR)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc, err := cf.dial()
			if err != nil {
				return err
			}
			defer cc.Close()
			ctx, cancel := cf.ctx(cmd.Context())
			defer cancel()
			if err := coordinator.NewMembershipClient(cc).AddVoter(ctx, coordinator.AddVoterRequest{ID: args[0], RaftAddr: args[1], Force: force}); err != nil {
				return rpcError(cf.addr, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added voter %s at %s\n", args[0], args[1])
			return nil
		},
	}
	cf = adminFlags(c)
	c.Flags().BoolVar(&force, "force", false, "add the voter even if nothing answers at its address yet")
	return c
}

func newClusterRemoveCmd() *cobra.Command {
	var cf *clientFlags
	c := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a server from the Raft configuration (a dead voter, or a node being retired)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc, err := cf.dial()
			if err != nil {
				return err
			}
			defer cc.Close()
			ctx, cancel := cf.ctx(cmd.Context())
			defer cancel()
			if err := coordinator.NewMembershipClient(cc).RemoveServer(ctx, coordinator.RemoveServerRequest{ID: args[0]}); err != nil {
				return rpcError(cf.addr, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		},
	}
	cf = adminFlags(c)
	return c
}
