package cluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/fsm"
)

// initCluster creates, once per cluster, the first administrator and the SSH
// host key, under the lease so that only one leader can do it.
func (n *Node) initCluster(epoch uint64) error {
	if n.machine.State().Initialized {
		return nil
	}
	user := n.cfg.InitialUser
	password, generated := n.cfg.InitialPassword, false
	if password == "" {
		b := make([]byte, 10)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("generate initial password: %w", err)
		}
		password, generated = strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), true
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash initial password: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(key, "udmg cluster host key")
	if err != nil {
		return fmt.Errorf("encode host key: %w", err)
	}
	hostKey := pem.EncodeToMemory(block)
	if n.cfg.SealSecret != nil {
		sealed, err := n.cfg.SealSecret(hostKey)
		if err != nil {
			return fmt.Errorf("seal host key: %w", err)
		}
		hostKey = []byte(sealed)
	}
	perms := map[string]string{}
	for _, d := range []string{"administration", "servers", "partners", "rules", "users", "transfers"} {
		perms[d] = "rw-"
	}
	err = n.apply(fsm.Command{Op: fsm.OpInit, At: time.Now(), Epoch: epoch,
		Init: &fsm.InitArgs{Admin: fsm.User{Name: user, Hash: hash, Perms: perms}, HostKey: hostKey}})
	if errors.Is(err, fsm.ErrInitialized) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("initialise cluster: %w", err)
	}
	if generated {
		n.log.Info("initial administrator created; this password is shown once", "user", user, "password", password)
	} else {
		n.log.Info("initial administrator created from [admin] InitialPassword", "user", user)
	}
	return nil
}
