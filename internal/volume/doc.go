// Package volume holds berth's local volumes and the parsing of mount specifications.
//
// A volume is a directory <root>/volumes/<name>/_data with a metadata record (driver, labels,
// options, creation time, whether it is anonymous) in its own bucket of the daemon's bbolt DB.
// Whether a volume is in use is not stored here: the daemon, which owns the containers, answers
// it through the hook given to SetInUse, and operations in flight pin the volumes they need.
//
// The parsers (ParseVolumeFlag for -v / HostConfig.Binds, ParseMountFlag for --mount,
// ValidateMount for HostConfig.Mounts) are pure and take user input: they must return errors
// that name the flag and never panic. This package must not mount anything, know about
// containers or images, or talk to the API.
package volume
