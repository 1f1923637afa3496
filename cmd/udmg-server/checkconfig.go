package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/config"
	"github.com/udmg/gateway/transfer"
)

// checkConfig is `udmg-server -check-config FILE`: FILE (with the UDMG_*
// overrides of env, as at start-up) loaded and put through the checks that
// make start-up refuse it, without opening a port, creating DataDir or
// writing anything. It prints "FILE: ok" on stdout and returns 0, or the
// one-line error on stderr and returns 1.
//
// Ports are not probed: the file is usually checked next to the running
// node whose ports it names, before a restart.
func checkConfig(path string, env []string, stdout, stderr io.Writer) int {
	if err := validate(path, env); err != nil {
		msg := oneLine(err.Error())
		if !strings.HasPrefix(msg, path+":") {
			msg = path + ": " + msg
		}
		fmt.Fprintln(stderr, msg)
		return 1
	}
	fmt.Fprintln(stdout, path+": ok")
	return 0
}

// validate runs the refusals of run that read but change nothing.
func validate(path string, env []string) error {
	cfg, err := config.Load(path, env)
	if err != nil {
		return err
	}
	where := path
	keys, err := decodeGossipKeys(where, cfg)
	if err != nil {
		return err
	}
	if _, err := cluster.ResolveAdvertise(cfg.Cluster.AdvertiseHost, cfg.Cluster.RaftAddress); err != nil {
		return err
	}
	hostname, _ := os.Hostname()
	id, _, err := cluster.LoadNodeID(cfg.Cluster.DataDir, cfg.Global.NodeID,
		cluster.DefaultNodeID(hostname, cfg.Admin.Host, cfg.Admin.Port, cfg.Global.GatewayName))
	if err != nil {
		return err
	}
	if _, err := cluster.LoadIdentity(cluster.IdentityConfig{
		NodeID: id, Name: cfg.Global.GatewayName, Tokens: cluster.ParseTokens(cfg.Cluster.JoinToken),
		CertFile: cfg.Cluster.TLSCert, KeyFile: cfg.Cluster.TLSKey, CAFile: cfg.Cluster.TLSCA, GossipKeys: keys,
	}); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if cfg.VIP.Enabled() {
		if err := vipDeadline(where, cfg); err != nil {
			return err
		}
	}
	if cfg.Database.AESPassphrase != "" {
		if _, err := transfer.KEKFromFile(cfg.Database.AESPassphrase); err != nil {
			return fmt.Errorf("%s: [database] AESPassphrase %s: %w", where, cfg.Database.AESPassphrase, err)
		}
	}
	_, err = protectedPaths(where, cfg)
	return err
}

// decodeGossipKeys decodes [cluster] GossipKey: base64 keys of 16, 24 or 32
// bytes, comma-separated, the first used to send.
func decodeGossipKeys(where string, cfg *config.Config) ([][]byte, error) {
	var keys [][]byte
	for _, k := range cluster.ParseTokens(cfg.Cluster.GossipKey) {
		key, err := base64.StdEncoding.DecodeString(k)
		if err != nil || (len(key) != 16 && len(key) != 24 && len(key) != 32) {
			return nil, fmt.Errorf("%s: [cluster] GossipKey: must be 16, 24 or 32 bytes in base64 (several comma-separated, the first used to send)", where)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
