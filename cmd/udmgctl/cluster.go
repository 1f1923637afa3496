package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/udmg/gateway/httpapi/wire"
)

// clusterStatus prints who is ACTIVE, the lease epoch and how long until
// the lease expires unless renewed.
func (c *cli) clusterStatus([]string) error {
	var v wire.ClusterStatus
	resp, err := c.callJSON("GET", "/api/cluster", nil, &v)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(resp.body)
		return nil
	}
	l := v.Lease
	expires := "-"
	switch {
	case l.Released:
		expires = "released"
	case l.Holder != "":
		left := time.Duration(l.RemainingSeconds * float64(time.Second)).Round(time.Millisecond)
		expires = fmt.Sprintf("%s (lease %s, measured by %s; renewed while the holder is up)", left, l.Duration, l.RemainingFrom)
		if left <= 0 {
			expires = fmt.Sprintf("expired (last held by %s)", l.Holder)
		}
	}
	answered := fmt.Sprintf("%s (%s, raft %s, term %d", v.AnsweredBy.NodeID, v.AnsweredBy.Mode, v.AnsweredBy.RaftState, v.AnsweredBy.Term)
	if lc := v.AnsweredBy.LastContact; lc != nil {
		answered += fmt.Sprintf(", leader heard %s ago", time.Since(*lc).Round(time.Millisecond))
	}
	answered += ")"

	tw := c.table()
	fmt.Fprintf(tw, "ACTIVE\t%s\n", or(v.Active, "none"))
	fmt.Fprintf(tw, "LEADER\t%s\n", or(v.Leader, "none"))
	fmt.Fprintf(tw, "LEASE EPOCH\t%d\n", l.Epoch)
	fmt.Fprintf(tw, "EXPIRES IN\t%s\n", expires)
	fmt.Fprintf(tw, "ANSWERED BY\t%s\n", answered)
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NODE ID\tSTATUS\tADMIN ADDRESS\tROLE")
	for _, n := range v.Nodes {
		var role []string
		if n.Active {
			role = append(role, "active")
		}
		if n.Leader {
			role = append(role, "leader")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.NodeID, n.Status, or(n.AdminAddr, "-"), or(strings.Join(role, ", "), "-"))
	}
	return tw.Flush()
}

// clusterToken prints a fresh [cluster] JoinToken: 32 random bytes in
// base64url. It needs no server: the token is a secret the operator puts in
// every node's configuration.
func (c *cli) clusterToken([]string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("cluster token: %w", err)
	}
	t := base64.RawURLEncoding.EncodeToString(b)
	if c.json {
		return c.encodeJSON(map[string]string{"token": t})
	}
	fmt.Fprintln(c.stdout, t)
	return nil
}

// nodesRemove removes a node from the Raft configuration and the node
// table; the node must be stopped first, or it is added again when it
// next proves its identity.
func (c *cli) nodesRemove(pos []string) error {
	if _, err := c.call("DELETE", "/api/nodes/"+url.PathEscape(pos[0]), nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "node %s removed\n", pos[0])
	return nil
}
