package image

import "time"

// SetRetryBase shortens the back-off between blob transfer attempts for tests.
func SetRetryBase(s *Service, d time.Duration) { s.retryBase = d }
