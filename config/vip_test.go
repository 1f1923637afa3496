package config

import (
	"strings"
	"testing"
)

func TestVIP(t *testing.T) {
	ok, err := Load(writeINI(t, "[vip]\nAddress = 192.168.56.100/24\nInterface = eth1\nSourceAddress = true\n"), nil)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if want := (VIP{Address: "192.168.56.100/24", Interface: "eth1", SourceAddress: true}); ok.VIP != want || !ok.VIP.Enabled() {
		t.Errorf("VIP = %+v, want %+v", ok.VIP, want)
	}
	env, err := Load("", []string{"UDMG_VIP_ADDRESS=10.0.0.5/16", "UDMG_VIP_INTERFACE=br0"})
	if err != nil || env.VIP.Address != "10.0.0.5/16" || env.VIP.Interface != "br0" || env.VIP.SourceAddress {
		t.Errorf("Load(env) = %+v, %v", env.VIP, err)
	}

	for _, tc := range []struct{ ini, want string }{
		{"Address = 192.168.56.100\nInterface = eth1", "[vip] Address: \"192.168.56.100\" is not an address with its prefix"},
		{"Address = fd00::5/64\nInterface = eth1", "[vip] Address: fd00::5/64 is not an IPv4 address"},
		{"Address = 127.0.0.9/8\nInterface = lo", "[vip] Address: 127.0.0.9/8 cannot be a service address"},
		{"Address = 192.168.56.100/24", "[vip] Interface: must be set with [vip] Address"},
		{"Interface = eth1", "[vip] Interface: eth1 is set but [vip] Address is empty"},
		{"SourceAddress = true", "[vip] SourceAddress: is true but [vip] Address is empty"},
		{"Address = 192.168.56.100/24\nInterface = eth1\nSourceAddress = maybe", "SourceAddress"},
		{"Address = 192.168.56.100/24\nInterface = eth1\n[admin]\nHost = 192.168.56.100", "[admin] Host: 192.168.56.100 is the service address"},
	} {
		_, err := Load(writeINI(t, "[vip]\n"+tc.ini+"\n"), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: Load = %v, want an error containing %q", tc.ini, err, tc.want)
		}
	}
}
