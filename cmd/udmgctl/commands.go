package main

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"github.com/udmg/gateway/httpapi/wire"
)

// domains are the permission domains, in the API's display order.
var domains = []string{"administration", "servers", "partners", "rules", "users", "transfers"}

func (c *cli) table() *tabwriter.Writer {
	return tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
}

func (c *cli) nodesList([]string) error {
	var out wire.NodeList
	resp, err := c.callJSON("GET", "/api/sb_mgmt_nodes", nil, &out)
	if err != nil {
		return err
	}
	if resp.header.Get("X-Udmg-Source") == "cluster-state" {
		fmt.Fprintln(c.stderr, "note: the node table (database) is unreachable; showing the cluster's replicated state")
	}
	if c.json {
		c.printJSON(resp.body)
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "NODE ID\tHOSTNAME\tIP ADDRESS\tPORT\tSTATUS\tUPTIME\tLAST UPDATE\tLAST ACTIVE")
	for _, n := range out.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.NodeID, n.NodeHostname, n.NodeIPAddress, n.NodePort,
			n.NodeStatus, shortDuration(n.NodeUptime), shortTime(n.NodeLastUpdate), shortTime(n.NodeLastActiveDate))
	}
	return tw.Flush()
}

func shortDuration(s string) string {
	if d, err := time.ParseDuration(s); err == nil {
		return d.Round(time.Second).String()
	}
	return or(s, "-")
}

func shortTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	switch {
	case err != nil:
		return or(s, "-")
	case t.IsZero():
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func (c *cli) usersList([]string) error {
	const page = 1000
	var all []wire.User
	var raw []byte
	for offset := 0; ; offset += page {
		var out wire.UserList
		resp, err := c.callJSON("GET", fmt.Sprintf("/api/users?limit=%d&offset=%d", page, offset), nil, &out)
		if err != nil {
			return err
		}
		all, raw = append(all, out.Users...), resp.body
		if len(out.Users) < page {
			break
		}
	}
	if c.json {
		if len(all) <= page {
			c.printJSON(raw)
			return nil
		}
		return c.encodeJSON(map[string]any{"users": all})
	}
	tw := c.table()
	fmt.Fprintln(tw, "USERNAME\t"+strings.ToUpper(strings.Join(domains, "\t")))
	for _, u := range all {
		row := []string{u.Username}
		for _, d := range domains {
			row = append(row, or(u.Perms[d], "---"))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// parsePerms reads "transfers=rw-,users=r--" into the API's perms object;
// the server checks the domains and modes.
func parsePerms(s string) (map[string]string, error) {
	perms := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return perms, nil
	}
	for _, item := range strings.Split(s, ",") {
		d, m, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || d == "" || m == "" {
			return nil, fmt.Errorf("--perms: %q is not DOMAIN=MODE (e.g. transfers=rw-)", item)
		}
		if _, dup := perms[d]; dup {
			return nil, fmt.Errorf("--perms: domain %q given twice", d)
		}
		perms[d] = m
	}
	return perms, nil
}

// usersAdd: after "users add", --password is the new user's password (it
// shadows the global flag); the caller's own comes before the command or
// from UDMGCTL_PASSWORD.
func (c *cli) usersAdd(fs *pflag.FlagSet) func([]string) error {
	password := fs.String("password", "", "the new user's password")
	perms := fs.String("perms", "", "permissions, e.g. transfers=rw-,users=r--")
	return func(pos []string) error { return c.addUser(pos[0], *password, *perms) }
}

func (c *cli) addUser(name, password, perms string) error {
	if password == "" {
		return fmt.Errorf("users add %s: --password is required", name)
	}
	p, err := parsePerms(perms)
	if err != nil {
		return err
	}
	var out wire.User
	resp, err := c.callJSON("POST", "/api/users", map[string]any{"username": name, "password": password, "perms": p}, &out)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(resp.body)
		return nil
	}
	fmt.Fprintf(c.stdout, "user %s created (%s)\n", out.Username, permsText(out.Perms))
	return nil
}

func permsText(perms map[string]string) string {
	var parts []string
	for _, d := range domains {
		parts = append(parts, d+"="+or(perms[d], "---"))
	}
	return strings.Join(parts, ",")
}

func (c *cli) usersDelete(pos []string) error {
	if _, err := c.call("DELETE", "/api/users/"+url.PathEscape(pos[0]), nil); err != nil {
		return err
	}
	if c.json {
		return c.encodeJSON(map[string]string{"deleted": pos[0]})
	}
	fmt.Fprintf(c.stdout, "user %s deleted\n", pos[0])
	return nil
}

func (c *cli) tokenCreate([]string) error {
	c.token = "" // a token is made from a password
	var out struct {
		Token   string `json:"token"`
		Expires string `json:"expires"`
	}
	resp, err := c.callJSON("POST", "/api/tokens", nil, &out)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(resp.body)
		return nil
	}
	fmt.Fprintln(c.stdout, out.Token)
	fmt.Fprintln(c.stderr, "token expires "+out.Expires+"; use it with --token or UDMGCTL_TOKEN")
	return nil
}

func (c *cli) tokenRevoke([]string) error {
	if c.token == "" {
		return fmt.Errorf("token revoke: --token (or UDMGCTL_TOKEN) names the token to revoke")
	}
	if _, err := c.call("DELETE", "/api/tokens/current", nil); err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintln(c.stdout, "token revoked")
	}
	return nil
}
