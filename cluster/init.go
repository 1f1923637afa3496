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

	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/authguard"
	"github.com/udmg/gateway/fsm"
)

// initCluster creates, once per cluster, the first administrator and the SSH
// host key, under the lease so that only one leader can do it.
func (n *Node) initCluster(epoch uint64) error {
	dataKey, err := n.secretsKey(epoch)
	if err != nil {
		return err
	}
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
	hash, err := authguard.Hash("[admin] InitialPassword", password)
	if err != nil {
		return err
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
	if n.cfg.Secrets != nil {
		sealed, err := n.cfg.Secrets.SealWith(dataKey, hostKey)
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

// SecretsKeeper holds this node's key-encryption key (KEK), which seals the
// cluster's data key in the replicated state (transfer.Secrets implements
// it). The KEK never enters the log.
type SecretsKeeper interface {
	// NewKey generates a data key, sealed with the KEK.
	NewKey() (string, error)
	// LegacyKey returns the previous release's key file
	// (<GatewayHome>/passphrase.aes) sealed with the KEK, and its path;
	// sealed is "" when there is no such file.
	LegacyKey() (sealed, path string, err error)
	// CheckKey says whether the KEK opens a sealed data key; its error
	// names the setting to fix.
	CheckKey(sealed string) error
	// SealWith seals plain under a sealed data key.
	SealWith(sealedKey string, plain []byte) (string, error)
	// NeedsRewrap says the key opens only with an older KEK (a JoinToken
	// rotation under way); Rotation computes the OpSecretsRotate that
	// seals a new data key with the current KEK.
	NeedsRewrap(sealed string) bool
	Rotation(st fsm.State) (*fsm.SecretsArgs, error)
}

// errSecretsKEK stops a node whose key-encryption key cannot open the
// cluster's data key from becoming ACTIVE; the reason is logged once.
var errSecretsKEK = errors.New("this node's key-encryption key does not open the cluster's secrets key (see the refusal logged before)")

// checkSecrets refuses, before this node takes a lease epoch, when its
// key-encryption key cannot open the cluster's data key: the refusal is
// logged once, until the key opens again.
func (n *Node) checkSecrets() error {
	if n.cfg.Secrets == nil {
		return nil
	}
	var sealed string
	n.machine.Read(func(s *fsm.State) {
		if s.Secrets != nil {
			sealed = s.Secrets.Current
		}
	})
	if sealed == "" {
		return nil
	}
	if err := n.cfg.Secrets.CheckKey(sealed); err != nil {
		if !n.secretsRefused.Swap(true) {
			n.log.Error("refusing to become ACTIVE: " + err.Error())
		}
		return errSecretsKEK
	}
	n.secretsRefused.Store(false)
	return nil
}

// secretsKey makes sure the cluster has a data key this node can open and
// returns it (sealed). A brand-new cluster generates one; a cluster from
// before the key moved into the state adopts its <GatewayHome>/passphrase.aes,
// whose key sealed every value it has. It runs under the lease, on every
// term, before the services start.
func (n *Node) secretsKey(epoch uint64) (string, error) {
	keeper := n.cfg.Secrets
	if keeper == nil {
		return "", nil
	}
	for attempt := 0; ; attempt++ {
		st := n.machine.State()
		if st.Secrets != nil {
			if err := keeper.CheckKey(st.Secrets.Current); err != nil {
				if !n.secretsRefused.Swap(true) {
					n.log.Error("refusing to become ACTIVE: " + err.Error())
				}
				n.handOver()
				return "", errSecretsKEK
			}
			n.secretsRefused.Store(false)
			if keeper.NeedsRewrap(st.Secrets.Current) {
				return n.rewrapSecrets(epoch, st)
			}
			return st.Secrets.Current, nil
		}
		if attempt > 0 {
			return "", errors.New("secrets key: set by another leader and not applied here")
		}
		key, from, err := n.newSecretsKey(st)
		if err != nil {
			return "", err
		}
		err = n.apply(fsm.Command{Op: fsm.OpSecretsKey, At: time.Now(), Epoch: epoch, Secrets: &fsm.SecretsArgs{Key: key}})
		if errors.Is(err, fsm.ErrSecretsKeySet) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("store the secrets key: %w", err)
		}
		if from != "" {
			n.log.Warn("the secrets key of "+from+" is now kept in the cluster state, sealed with the key-encryption key; the gateway no longer reads that file and no rule or transfer can reach it: delete it", "file", from)
		} else {
			n.log.Info("secrets key generated and kept in the cluster state, sealed with the key-encryption key")
		}
		return key, nil
	}
}

// rewrapSecrets rotates the data key when it opens only with an older
// key-encryption key (the old token of a JoinToken rotation, the key of a
// lone node given a JoinToken later), so that it is sealed with the
// current one before the older one is dropped. Failing that, the key in force still
// serves: the next term tries again.
func (n *Node) rewrapSecrets(epoch uint64, st fsm.State) (string, error) {
	rot, err := n.cfg.Secrets.Rotation(st)
	if err == nil {
		err = n.apply(fsm.Command{Op: fsm.OpSecretsRotate, At: time.Now(), Epoch: epoch, Secrets: rot})
	}
	if err != nil {
		n.log.Warn("secrets key not resealed with this node's current key-encryption key; retried next term", "err", err)
		return st.Secrets.Current, nil
	}
	n.log.Info("secrets key resealed with this node's current key-encryption key ([cluster] JoinToken's first token or [database] AESPassphrase): the older one no longer opens it", "resealed", len(rot.Values))
	return rot.Key, nil
}

// newSecretsKey is the data key for a cluster that has none: the previous
// release's key file when there is one, else a new key. A state that holds
// sealed values but no key and no file cannot be opened by anyone: that is
// refused rather than replaced by a key that opens nothing.
func (n *Node) newSecretsKey(st fsm.State) (key, from string, err error) {
	key, path, err := n.cfg.Secrets.LegacyKey()
	if err != nil {
		return "", "", fmt.Errorf("secrets key: %w", err)
	}
	if key != "" {
		return key, path, nil
	}
	if sealed := st.Sealed(); len(sealed) > 0 {
		return "", "", fmt.Errorf("secrets key: the cluster state holds sealed values (%s, …) but no secrets key, and the previous release's key file %s does not exist", sealed[0].Ref, path)
	}
	key, err = n.cfg.Secrets.NewKey()
	return key, "", err
}
