package record

import (
	"errors"
	"fmt"
)

// ErrShort is returned when the bytes end before the record or header does.
// At the end of the active container it means a torn tail, which recovery
// cuts off; anywhere else the caller reports it as corruption.
var ErrShort = errors.New("record: truncated record")

// FormatError says what is wrong with bytes that are not a valid record or
// header. It carries no location: the caller knows the container and offset
// and adds them (backend.CorruptError).
type FormatError struct {
	Reason string
}

func (e *FormatError) Error() string { return "record: " + e.Reason }

// formatErrorf returns a *FormatError whose reason is built by fmt.Sprintf.
func formatErrorf(format string, args ...any) error {
	return &FormatError{Reason: fmt.Sprintf(format, args...)}
}
