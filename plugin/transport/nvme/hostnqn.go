package nvme

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// DefaultHostNQNFile is where nvme-cli and the kernel tooling keep the host NQN.
const DefaultHostNQNFile = "/etc/nvme/hostnqn"

const (
	dmiProductUUID = "/sys/class/dmi/id/product_uuid"
	uuidNQNPrefix  = "nqn.2014-08.org.nvmexpress:uuid:"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// HostNQN returns this node's host NQN from DefaultHostNQNFile, creating the
// file if absent. It is the node ID of nodes that use this transport.
func HostNQN() (string, error) { return LoadOrCreateHostNQN(DefaultHostNQNFile, dmiProductUUID) }

// LoadOrCreateHostNQN reads the host NQN in file. When the file is absent or
// empty it writes one the way `nvme gen-hostnqn` does: from the machine's DMI
// product UUID when there is one (stable across reinstalls), else a random UUID.
func LoadOrCreateHostNQN(file, dmiUUIDFile string) (string, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		nqn := strings.TrimSpace(string(b))
		if nqn != "" {
			if err := ValidateHostNQN(nqn); err != nil {
				return "", fmt.Errorf("%s: %w", file, err)
			}
			return nqn, nil
		}
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("read host NQN: %w", err)
	}
	id := ""
	if b, err := os.ReadFile(dmiUUIDFile); err == nil {
		if u := strings.ToLower(strings.TrimSpace(string(b))); uuidPattern.MatchString(u) && u != "00000000-0000-0000-0000-000000000000" {
			id = u
		}
	}
	if id == "" {
		var r [16]byte
		if _, err := rand.Read(r[:]); err != nil {
			return "", err
		}
		r[6] = r[6]&0x0f | 0x40
		r[8] = r[8]&0x3f | 0x80
		id = fmt.Sprintf("%x-%x-%x-%x-%x", r[0:4], r[4:6], r[6:8], r[8:10], r[10:16])
	}
	nqn := uuidNQNPrefix + id
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return "", fmt.Errorf("create host NQN: %w", err)
	}
	// Write-then-rename: a crash never leaves an empty or partial NQN behind.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(nqn+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("create host NQN: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return "", fmt.Errorf("create host NQN: %w", err)
	}
	return nqn, nil
}

// hostIDFromNQN returns the UUID of a uuid-form host NQN, used as the host ID
// so that all connections of this host present one consistent identity.
func hostIDFromNQN(nqn string) string {
	if u, ok := strings.CutPrefix(nqn, uuidNQNPrefix); ok && uuidPattern.MatchString(u) {
		return u
	}
	return ""
}
