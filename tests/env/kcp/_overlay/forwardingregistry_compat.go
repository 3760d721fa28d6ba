// Overlay for github.com/kcp-dev/virtual-workspace-framework@v0.31.2/pkg/forwardingregistry,
// added to that package at build time with `go build -overlay` (see xtask/src/gobuild.rs).
//
// kcp v0.32.3 calls registry.ValidatePathSegmentName from v0.32 of the framework, which is
// not published on the module proxy; v0.31.2 is, and differs from it (for cmd/kcp) only by
// lacking this exported name. v0.31.2 itself passes path.ValidatePathSegmentName to the same
// customresource.NewStrategy parameter, so this forwards to that.
package forwardingregistry

import "k8s.io/apimachinery/pkg/api/validation/path"

// ValidatePathSegmentName validates an object name that is used as a URL path segment.
func ValidatePathSegmentName(name string, prefix bool) []string {
	return path.ValidatePathSegmentName(name, prefix)
}
