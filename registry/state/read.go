package state

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// ServerVersion returns one version of a server.
func (f *FSM) ServerVersion(server, version string) (ServerVersion, error) {
	return getOne[ServerVersion](f, versionKey(server, version), func() error {
		return errorf(KindNotFound, "%s@%s is not registered", server, version)
	})
}

// ServerVersions returns every version of a server, oldest first by semver
// precedence. A server with no versions is KindNotFound.
func (f *FSM) ServerVersions(server string) ([]ServerVersion, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out, err := scan[ServerVersion](f.db, []byte("v\x00"+server+"\x00"))
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errorf(KindNotFound, "server %s is not registered", server)
	}
	sortVersions(out)
	return out, nil
}

// AllVersions returns every version of every server, by server name and
// then semver precedence.
func (f *FSM) AllVersions() ([]ServerVersion, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out, err := scan[ServerVersion](f.db, prefixVersions)
	if err != nil {
		return nil, err
	}
	sortVersions(out)
	return out, nil
}

// ToolVersions returns the tools of one server version, by name.
func (f *FSM) ToolVersions(server, version string) ([]card.ToolVersion, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[card.ToolVersion](f.db, []byte("t\x00"+server+"\x00"+version+"\x00"))
}

// Tenant returns one tenant.
func (f *FSM) Tenant(name string) (Tenant, error) {
	return getOne[Tenant](f, tenantKey(name), func() error {
		return errorf(KindNotFound, "tenant %s does not exist", name)
	})
}

// Tenants returns every tenant, by name.
func (f *FSM) Tenants() ([]Tenant, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[Tenant](f.db, prefixTenants)
}

func sortVersions(vs []ServerVersion) {
	sort.SliceStable(vs, func(i, j int) bool {
		if vs[i].Server != vs[j].Server {
			return vs[i].Server < vs[j].Server
		}
		return card.CompareVersions(vs[i].Version, vs[j].Version) < 0
	})
}

// getOne reads one object for a reader; missing makes the error for an
// absent one.
func getOne[T any](f *FSM, key []byte, missing func() error) (T, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, ok, err := getJSON[T](f.db, key)
	if err != nil {
		return v, fmt.Errorf("read %q: %w", key, err)
	}
	if !ok {
		return v, missing()
	}
	return v, nil
}

func scan[T any](r pebble.Reader, prefix []byte) ([]T, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixUpper(prefix)})
	if err != nil {
		return nil, fmt.Errorf("scan %q: %w", prefix, err)
	}
	defer it.Close()
	out := []T{}
	for ok := it.First(); ok; ok = it.Next() {
		var v T
		if err := json.Unmarshal(it.Value(), &v); err != nil {
			return nil, fmt.Errorf("decode %q: %w", it.Key(), err)
		}
		out = append(out, v)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("scan %q: %w", prefix, err)
	}
	return out, nil
}
