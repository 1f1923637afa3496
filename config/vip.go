package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// VIP is the service address the ACTIVE node adds to one of its interfaces
// itself ([vip]; ARCHITECTURE.md "The service address"): clients and
// partners see one address across failovers, with no keepalived.
type VIP struct {
	// Address is the service address with its prefix, "192.168.56.100/24";
	// "" = the node holds no address (default).
	Address string
	// Interface is the network interface the address is added to ("eth1");
	// required with Address.
	Interface string
	// SourceAddress makes every connection to a partner leave from Address,
	// so that a partner's allow-list names one IP across failovers.
	SourceAddress bool
}

// Enabled says whether this node holds the service address when ACTIVE.
func (v VIP) Enabled() bool { return v.Address != "" }

// IPNet is Address parsed: the address itself and its prefix.
func (v VIP) IPNet() (net.IP, *net.IPNet, error) {
	return net.ParseCIDR(strings.TrimSpace(v.Address))
}

func boolean(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", v)
		}
		*field(c) = b
		return nil
	}
}

func (c *Config) checkVIP() error {
	v := c.VIP
	if v.Address == "" {
		if v.Interface != "" {
			return c.keyError("vip", "Interface", "%s is set but [vip] Address is empty (give the service address, e.g. 192.168.56.100/24)", v.Interface)
		}
		if v.SourceAddress {
			return c.keyError("vip", "SourceAddress", "is true but [vip] Address is empty (connections need an address to leave from)")
		}
		return nil
	}
	ip, _, err := v.IPNet()
	if err != nil {
		return c.keyError("vip", "Address", "%q is not an address with its prefix (CIDR, e.g. 192.168.56.100/24)", v.Address)
	}
	if ip.To4() == nil {
		return c.keyError("vip", "Address", "%s is not an IPv4 address (only IPv4 addresses are supported)", v.Address)
	}
	if ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() {
		return c.keyError("vip", "Address", "%s cannot be a service address (loopback, unspecified or multicast)", v.Address)
	}
	if net.ParseIP(c.Admin.Host).Equal(ip) {
		return c.keyError("admin", "Host", "%s is the service address ([vip] Address): /ping must answer on every node's own address", c.Admin.Host)
	}
	if strings.TrimSpace(v.Interface) == "" {
		return c.keyError("vip", "Interface", "must be set with [vip] Address (the interface the address is added to, e.g. eth1)")
	}
	return nil
}
