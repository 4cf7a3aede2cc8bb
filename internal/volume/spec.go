package volume

import (
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/mount"
)

// ValidName reports whether name is acceptable as a local volume name.
func ValidName(name string) bool {
	// Docker's rule, ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$, by hand: a package-level regexp is compiled in
	// every berth process at start-up.
	if len(name) < 2 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// maxSpecLen bounds a mount specification; real ones are a few hundred bytes at most.
const maxSpecLen = 64 << 10

// Spec is a parsed mount request: the API's mount.Mount plus what the -v form adds.
type Spec struct {
	mount.Mount
	// CreateSource is set for -v binds: a missing host directory is created, as Docker does.
	// --mount type=bind refuses a missing source instead.
	CreateSource bool
	// Mode is the raw mode of a -v specification ("ro,z"), reported by inspect.
	Mode string
}

// propagations are the accepted propagation modes.
var propagations = []string{"private", "rprivate", "shared", "rshared", "slave", "rslave"}

// ParseVolumeFlag parses a -v/--volume value (or an entry of HostConfig.Binds):
// [SOURCE:]DESTINATION[:MODE], where SOURCE is an absolute host path (a bind mount) or a volume
// name, and MODE is a comma-separated list of ro|rw, a propagation mode, nocopy, z|Z and
// consistency flags. A lone DESTINATION asks for an anonymous volume.
func ParseVolumeFlag(raw string) (Spec, error) {
	fail := func(format string, args ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("invalid -v/--volume specification %q: %s", truncate(raw), fmt.Sprintf(format, args...))
	}
	if raw == "" {
		return fail("it is empty")
	}
	if len(raw) > maxSpecLen {
		return fail("it is longer than %d bytes", maxSpecLen)
	}
	parts := strings.Split(raw, ":")
	var s Spec
	switch len(parts) {
	case 1:
		s.Target = parts[0]
	case 2:
		s.Source, s.Target = parts[0], parts[1]
	case 3:
		s.Source, s.Target, s.Mode = parts[0], parts[1], parts[2]
	default:
		return fail("use [SOURCE:]DESTINATION[:MODE] (too many colons)")
	}
	if err := checkTarget(s.Target); err != nil {
		return fail("%v", err)
	}
	switch {
	case s.Source == "":
		if len(parts) > 1 {
			return fail("the source is empty")
		}
		s.Type = mount.TypeVolume
	case strings.HasPrefix(s.Source, "/"):
		s.Type = mount.TypeBind
		s.Source = path.Clean(s.Source)
		s.CreateSource = true
	default:
		if !ValidName(s.Source) {
			return fail("%q includes invalid characters for a local volume name, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed; if you intended to pass a host directory, use an absolute path", s.Source)
		}
		s.Type = mount.TypeVolume
	}
	if s.Mode == "" {
		return s, nil
	}
	var rwSet, propSet, consSet, labelSet bool
	for _, o := range strings.Split(s.Mode, ",") {
		switch {
		case o == "ro" || o == "rw":
			if rwSet {
				return fail("mode %q sets ro/rw twice", s.Mode)
			}
			rwSet = true
			s.ReadOnly = o == "ro"
		case slices.Contains(propagations, o):
			if propSet {
				return fail("mode %q sets propagation twice", s.Mode)
			}
			if s.Type != mount.TypeBind {
				return fail("propagation %q applies to bind mounts only", o)
			}
			propSet = true
			s.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(o)}
		case o == "nocopy":
			if s.Type != mount.TypeVolume {
				return fail("nocopy applies to volumes only")
			}
			if s.VolumeOptions == nil {
				s.VolumeOptions = &mount.VolumeOptions{}
			}
			s.VolumeOptions.NoCopy = true
		case o == "z" || o == "Z":
			// SELinux relabelling; berth's hosts have no SELinux, accepted for compatibility.
			if labelSet {
				return fail("mode %q sets z/Z twice", s.Mode)
			}
			labelSet = true
		case o == "consistent" || o == "cached" || o == "delegated" || o == "default":
			if consSet {
				return fail("mode %q sets consistency twice", s.Mode)
			}
			consSet = true
		default:
			return fail("unknown mode %q (use ro, rw, nocopy, a propagation such as rshared, z or Z)", o)
		}
	}
	return s, nil
}

// ParseMountFlag parses a --mount value: comma-separated key=value pairs (CSV, so values may be
// quoted): type=bind|volume|tmpfs (default volume), source|src, target|destination|dst,
// readonly|ro[=bool], bind-propagation, bind-nonrecursive, volume-nocopy, volume-label,
// volume-driver, volume-opt, volume-subpath, tmpfs-size, tmpfs-mode, consistency.
func ParseMountFlag(raw string) (mount.Mount, error) {
	fail := func(format string, args ...any) (mount.Mount, error) {
		return mount.Mount{}, fmt.Errorf("invalid --mount %q: %s", truncate(raw), fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(raw) == "" {
		return fail("it is empty")
	}
	if len(raw) > maxSpecLen {
		return fail("it is longer than %d bytes", maxSpecLen)
	}
	r := csv.NewReader(strings.NewReader(raw))
	r.LazyQuotes = true
	fields, err := r.Read()
	if err != nil {
		return fail("%v", err)
	}
	m := mount.Mount{Type: mount.TypeVolume}
	// Options for a type are checked after the loop, when the type is known.
	var bindOpts, volOpts, tmpfsOpts []string
	bindOptions := func() *mount.BindOptions {
		if m.BindOptions == nil {
			m.BindOptions = &mount.BindOptions{}
		}
		return m.BindOptions
	}
	volumeOptions := func() *mount.VolumeOptions {
		if m.VolumeOptions == nil {
			m.VolumeOptions = &mount.VolumeOptions{}
		}
		return m.VolumeOptions
	}
	tmpfsOptions := func() *mount.TmpfsOptions {
		if m.TmpfsOptions == nil {
			m.TmpfsOptions = &mount.TmpfsOptions{}
		}
		return m.TmpfsOptions
	}
	parseBool := func(k, v string, hasV bool) (bool, error) {
		if !hasV {
			return true, nil
		}
		switch strings.ToLower(v) {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return false, fmt.Errorf("invalid value for %s: %q (use true or false)", k, v)
	}
	for _, f := range fields {
		k, v, hasV := strings.Cut(strings.TrimSpace(f), "=")
		k = strings.ToLower(k)
		needV := func() error {
			if !hasV {
				return fmt.Errorf("%s needs a value (%s=...)", k, k)
			}
			return nil
		}
		switch k {
		case "type":
			if err := needV(); err != nil {
				return fail("%v", err)
			}
			m.Type = mount.Type(strings.ToLower(v))
		case "source", "src":
			if err := needV(); err != nil {
				return fail("%v", err)
			}
			m.Source = v
		case "target", "dst", "destination":
			if err := needV(); err != nil {
				return fail("%v", err)
			}
			m.Target = v
		case "readonly", "ro":
			b, err := parseBool(k, v, hasV)
			if err != nil {
				return fail("%v", err)
			}
			m.ReadOnly = b
		case "consistency":
			if err := needV(); err != nil {
				return fail("%v", err)
			}
			m.Consistency = mount.Consistency(v)
		case "bind-propagation":
			if err := needV(); err != nil {
				return fail("%v", err)
			}
			if !slices.Contains(propagations, v) {
				return fail("invalid bind-propagation %q (use %s)", v, strings.Join(propagations, ", "))
			}
			bindOptions().Propagation = mount.Propagation(v)
			bindOpts = append(bindOpts, k)
		case "bind-nonrecursive", "bind-create-mountpoint":
			b, err := parseBool(k, v, hasV)
			if err != nil {
				return fail("%v", err)
			}
			if k == "bind-nonrecursive" {
				bindOptions().NonRecursive = b
			} else {
				bindOptions().CreateMountpoint = b
			}
			bindOpts = append(bindOpts, k)
		case "volume-nocopy", "volume-no-copy":
			b, err := parseBool(k, v, hasV)
			if err != nil {
				return fail("%v", err)
			}
			volumeOptions().NoCopy = b
			volOpts = append(volOpts, k)
		case "volume-label", "volume-opt":
			if err := needV(); err != nil {
				return fail("%v", err)
			}
			lk, lv, _ := strings.Cut(v, "=")
			if lk == "" {
				return fail("%s needs KEY=VALUE", k)
			}
			vo := volumeOptions()
			if k == "volume-label" {
				if vo.Labels == nil {
					vo.Labels = map[string]string{}
				}
				vo.Labels[lk] = lv
			} else {
				if vo.DriverConfig == nil {
					vo.DriverConfig = &mount.Driver{}
				}
				if vo.DriverConfig.Options == nil {
					vo.DriverConfig.Options = map[string]string{}
				}
				vo.DriverConfig.Options[lk] = lv
			}
			volOpts = append(volOpts, k)
		case "volume-driver":
			if err := needV(); err != nil {
				return fail("%v", err)
			}
			vo := volumeOptions()
			if vo.DriverConfig == nil {
				vo.DriverConfig = &mount.Driver{}
			}
			vo.DriverConfig.Name = v
			volOpts = append(volOpts, k)
		case "volume-subpath":
			if err := needV(); err != nil {
				return fail("%v", err)
			}
			volumeOptions().Subpath = v
			volOpts = append(volOpts, k)
		case "tmpfs-size":
			if err := needV(); err != nil {
				return fail("%v", err)
			}
			n, err := units.RAMInBytes(v)
			if err != nil || n <= 0 {
				return fail("invalid tmpfs-size %q (use a size such as 64m)", v)
			}
			tmpfsOptions().SizeBytes = n
			tmpfsOpts = append(tmpfsOpts, k)
		case "tmpfs-mode":
			if err := needV(); err != nil {
				return fail("%v", err)
			}
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil || n > 0o7777 {
				return fail("invalid tmpfs-mode %q (use an octal mode such as 1777)", v)
			}
			tmpfsOptions().Mode = os.FileMode(n)
			tmpfsOpts = append(tmpfsOpts, k)
		default:
			return fail("unknown option %q", k)
		}
	}
	if len(bindOpts) > 0 && m.Type != mount.TypeBind {
		return fail("%s applies to type=bind only", bindOpts[0])
	}
	if len(volOpts) > 0 && m.Type != mount.TypeVolume {
		return fail("%s applies to type=volume only", volOpts[0])
	}
	if len(tmpfsOpts) > 0 && m.Type != mount.TypeTmpfs {
		return fail("%s applies to type=tmpfs only", tmpfsOpts[0])
	}
	// A relative bind source is the caller's to resolve (docker's CLI makes it absolute).
	if err := validate(m, true); err != nil {
		return fail("%v", err)
	}
	return m, nil
}

// ValidateMount checks an entry of HostConfig.Mounts as the daemon receives it.
func ValidateMount(m mount.Mount) error {
	if err := validate(m, false); err != nil {
		return fmt.Errorf("invalid mount config for type %q (--mount): %w", m.Type, err)
	}
	return nil
}

func validate(m mount.Mount, relativeBindOK bool) error {
	if err := checkTarget(m.Target); err != nil {
		return err
	}
	switch m.Type {
	case mount.TypeBind:
		if m.Source == "" {
			return errors.New("a bind mount needs a source (source=/host/path)")
		}
		if !relativeBindOK && !path.IsAbs(m.Source) {
			return fmt.Errorf("the bind source %q must be an absolute path", m.Source)
		}
		if m.VolumeOptions != nil || m.TmpfsOptions != nil {
			return errors.New("volume and tmpfs options do not apply to bind mounts")
		}
		if m.BindOptions != nil && m.BindOptions.Propagation != "" && !slices.Contains(propagations, string(m.BindOptions.Propagation)) {
			return fmt.Errorf("invalid propagation %q", m.BindOptions.Propagation)
		}
	case mount.TypeVolume:
		if m.Source != "" && !ValidName(m.Source) {
			return fmt.Errorf("%q includes invalid characters for a local volume name, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", m.Source)
		}
		if m.BindOptions != nil || m.TmpfsOptions != nil {
			return errors.New("bind and tmpfs options do not apply to volumes")
		}
		if vo := m.VolumeOptions; vo != nil {
			if vo.Subpath != "" {
				return errors.New("volume-subpath is not supported by berth yet")
			}
			if vo.DriverConfig != nil && vo.DriverConfig.Name != "" && vo.DriverConfig.Name != "local" {
				return fmt.Errorf("volume driver %q is not supported (only local)", vo.DriverConfig.Name)
			}
		}
	case mount.TypeTmpfs:
		if m.Source != "" {
			return errors.New("a tmpfs mount takes no source")
		}
		if m.BindOptions != nil || m.VolumeOptions != nil {
			return errors.New("bind and volume options do not apply to tmpfs mounts")
		}
		if to := m.TmpfsOptions; to != nil && (to.SizeBytes < 0 || uint32(to.Mode) > 0o7777) {
			return errors.New("invalid tmpfs size or mode")
		}
	case "":
		return errors.New("the mount type is missing (type=bind|volume|tmpfs)")
	default:
		return fmt.Errorf("mount type %q is not supported (use bind, volume or tmpfs)", m.Type)
	}
	return nil
}

// checkTarget requires an absolute destination other than "/".
func checkTarget(t string) error {
	if t == "" {
		return errors.New("the destination (target) is missing")
	}
	if !path.IsAbs(t) {
		return fmt.Errorf("the destination %q must be an absolute path", t)
	}
	if path.Clean(t) == "/" {
		return errors.New("the destination cannot be \"/\"")
	}
	if strings.ContainsRune(t, 0) {
		return errors.New("the destination contains a NUL byte")
	}
	return nil
}

// ParseVolumesFrom parses a --volumes-from value: CONTAINER[:ro|rw].
func ParseVolumesFrom(raw string) (ctr string, mode string, err error) {
	c, m, hasMode := strings.Cut(raw, ":")
	if c == "" {
		return "", "", fmt.Errorf("invalid --volumes-from %q: the container is missing", truncate(raw))
	}
	if hasMode && m != "ro" && m != "rw" {
		return "", "", fmt.Errorf("invalid --volumes-from %q: mode %q (use ro or rw)", truncate(raw), m)
	}
	return c, m, nil
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
