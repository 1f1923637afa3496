package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/config"
	"github.com/udmg/gateway/confine"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/transfer"
)

// openSecrets picks this node's key-encryption key: the operator's
// [database] AESPassphrase file when set, else the key derived from
// [cluster] JoinToken, else (a lone node of an evaluation) a key generated
// once in DataDir. The cluster's data key itself is in the replicated state.
func openSecrets(where string, cfg *config.Config) (*transfer.Secrets, error) {
	var kek transfer.KEK
	var older []transfer.KEK
	var err error
	switch {
	case cfg.Database.AESPassphrase != "":
		kek, err = transfer.KEKFromFile(cfg.Database.AESPassphrase)
		if err != nil {
			return nil, fmt.Errorf("%s: [database] AESPassphrase %s: %w", where, cfg.Database.AESPassphrase, err)
		}
	case cfg.Cluster.JoinToken != "":
		// "new,old" while the token is rotated: the first seals, both open.
		for i, token := range cluster.ParseTokens(cfg.Cluster.JoinToken) {
			k := transfer.KEK{Key: cluster.DeriveKey(token, "secrets"), Source: "[cluster] JoinToken"}
			if i == 0 {
				kek = k
			} else {
				older = append(older, k)
			}
		}
	default:
		kek, err = transfer.KEKInDataDir(cfg.Cluster.DataDir)
		if err != nil {
			return nil, fmt.Errorf("%s: [cluster] DataDir: %w", where, err)
		}
	}
	// The keys this node used before still open the secrets key, so that a
	// lone node given a JoinToken (or an AESPassphrase file) later reseals
	// it under the new key-encryption key instead of refusing to serve.
	if cfg.Database.AESPassphrase != "" {
		for _, token := range cluster.ParseTokens(cfg.Cluster.JoinToken) {
			older = append(older, transfer.KEK{Key: cluster.DeriveKey(token, "secrets"), Source: "[cluster] JoinToken"})
		}
	}
	if cfg.Database.AESPassphrase != "" || cfg.Cluster.JoinToken != "" {
		if _, err := os.Stat(filepath.Join(cfg.Cluster.DataDir, transfer.KEKFile)); err == nil {
			k, err := transfer.KEKInDataDir(cfg.Cluster.DataDir)
			if err != nil {
				return nil, fmt.Errorf("%s: [cluster] DataDir: %w", where, err)
			}
			older = append(older, k)
		}
	}
	legacy, _ := filepath.Abs(cfg.LegacyKeyFile())
	return transfer.NewSecrets(kek, legacy, older...)
}

// protectedPaths is the guard every rule path, transfer file and account
// home goes through: nothing under DataDir, no key file.
func protectedPaths(where string, cfg *config.Config) (*confine.Guard, error) {
	g, err := confine.New(cfg.Protected()...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return g, nil
}

// bindSecrets makes Seal and Open use the data keys of node's replicated
// state, read in place (no copy of the whole state per secret).
func bindSecrets(secrets *transfer.Secrets, node *cluster.Node) {
	secrets.Bind(func() (keys *fsm.SecretsKeys) {
		node.Read(func(s *fsm.State) { keys = s.Secrets })
		return keys
	})
}
