// Package archive reads and writes OCI/Docker layer tarballs: it detects and removes gzip/zstd
// compression, extracts a layer into a directory (optionally converting OCI whiteouts to the
// overlayfs on-disk form) and writes layer diffs and whole trees back out as deterministic tars.
//
// # Threat model
//
// The attacker controls every byte of the (possibly compressed) tar stream given to Apply: names,
// link targets, types, modes, owners, xattrs, sizes and the order of entries. Apply must never
// create, modify or remove anything outside the target directory, and must never panic; malformed
// input yields an error that says what was wrong. Concretely:
//
//   - Entry names are cleaned as if rooted at the target directory: ".." cannot climb above it and
//     absolute names ("/etc/x") are taken relative to it, as Docker does.
//   - Every parent directory of an entry (and of a hardlink target) is resolved with
//     openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS): a symlink stored by an earlier entry is
//     followed as if the target directory were "/", so it can never lead outside. The last component
//     of an entry is never followed: an existing symlink there is replaced, not written through.
//     Symlinks themselves are stored verbatim and may point anywhere.
//   - Hardlink targets must already exist inside the target directory (in this layer); they are
//     resolved the same way and the link never follows a symlink in the last component.
//   - Character and block devices are created only when running as root. Extended attributes in the
//     overlay namespaces (trusted.overlay.*, user.overlay.*) are dropped so that a layer cannot forge
//     overlayfs metadata (redirects, opaque markers) except through the OCI whiteout convention.
//   - Directories are created owner-writable and receive their final mode and mtime only after the
//     last entry, so a failed Apply leaves a tree that the caller can remove with os.RemoveAll.
//     Nothing immutable (chattr +i) is ever set.
//
// It does not defend against resource exhaustion by a huge but well-formed layer (disk quota is the
// caller's business) and it does not hold the target directory against concurrent modification by
// other processes.
//
// The writers (WriteDiff, WriteDir) walk trees that a container may have modified; they use
// fd-relative lookups that never follow symlinks and never block on FIFOs.
package archive
