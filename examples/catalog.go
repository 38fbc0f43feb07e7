// Package examples holds the example material that ships with mcpmesh:
// server cards per BU under catalog/ (embedded here, so `mcpmesh dev` can
// seed a registry from any working directory) and the three-node cluster
// configs under cluster/.
//
// It owns example data only; nothing in it is needed in production.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed catalog/*/*.json catalog/*/tenants.yaml catalog/*/*.cedar catalog/*/exports.yaml
var catalog embed.FS

// Catalog returns the example catalogs: one directory per namespace (hr,
// finance) with one card file per server version, the BU's tenants.yaml,
// its Cedar policies and, where it shares tools with other BUs, its
// exports.yaml.
func Catalog() fs.FS {
	sub, err := fs.Sub(catalog, "catalog")
	if err != nil {
		panic(err) // the embedded tree is static
	}
	return sub
}
