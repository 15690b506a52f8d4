package blob

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nightjar-backup/nightjar/sdk/blob/blobpb"
)

// ChunkSize is the largest data chunk sent in one Put or Get message.
const ChunkSize = 1 << 20

func kindToWire(k Kind) blobpb.Kind { return blobpb.Kind(k) }

func kindFromWire(k blobpb.Kind) (Kind, error) {
	if k <= blobpb.Kind_KIND_UNSPECIFIED || k > blobpb.Kind_KIND_STRING_MAP {
		return 0, fmt.Errorf("unknown field kind %v", k)
	}
	return Kind(k), nil
}

func valueToWire(v any) (*blobpb.Value, error) {
	switch x := v.(type) {
	case string:
		return &blobpb.Value{Kind: &blobpb.Value_StringValue{StringValue: x}}, nil
	case int64:
		return &blobpb.Value{Kind: &blobpb.Value_IntValue{IntValue: x}}, nil
	case float64:
		return &blobpb.Value{Kind: &blobpb.Value_FloatValue{FloatValue: x}}, nil
	case bool:
		return &blobpb.Value{Kind: &blobpb.Value_BoolValue{BoolValue: x}}, nil
	case time.Duration:
		return &blobpb.Value{Kind: &blobpb.Value_DurationNanos{DurationNanos: int64(x)}}, nil
	case []string:
		return &blobpb.Value{Kind: &blobpb.Value_Strings{Strings: &blobpb.StringList{Values: x}}}, nil
	case map[string]string:
		return &blobpb.Value{Kind: &blobpb.Value_StringMap{StringMap: &blobpb.StringMap{Values: x}}}, nil
	}
	return nil, fmt.Errorf("unsupported config value %v (%T)", v, v)
}

func valueFromWire(v *blobpb.Value) (any, error) {
	switch x := v.GetKind().(type) {
	case *blobpb.Value_StringValue:
		return x.StringValue, nil
	case *blobpb.Value_IntValue:
		return x.IntValue, nil
	case *blobpb.Value_FloatValue:
		return x.FloatValue, nil
	case *blobpb.Value_BoolValue:
		return x.BoolValue, nil
	case *blobpb.Value_DurationNanos:
		return time.Duration(x.DurationNanos), nil
	case *blobpb.Value_Strings:
		return append([]string{}, x.Strings.GetValues()...), nil
	case *blobpb.Value_StringMap:
		m := map[string]string{}
		for k, s := range x.StringMap.GetValues() {
			m[k] = s
		}
		return m, nil
	}
	return nil, errors.New("empty value")
}

func describeToWire(d Description) (*blobpb.DescribeResponse, error) {
	out := &blobpb.DescribeResponse{Name: d.Name, Version: d.Version, Doc: d.Doc}
	for _, v := range d.ProtocolVersions {
		out.ProtocolVersions = append(out.ProtocolVersions, uint32(v))
	}
	for _, f := range d.Fields {
		wf := &blobpb.Field{Name: f.Name, Kind: kindToWire(f.Kind), Required: f.Required, Secret: f.Secret,
			Doc: f.Doc, Example: f.Example, Enum: f.Enum}
		if f.Default != nil {
			if err := checkValue(f.Kind, f.Default); err != nil {
				return nil, fmt.Errorf("field %q: default: %w", f.Name, err)
			}
			dv, err := valueToWire(f.Default)
			if err != nil {
				return nil, fmt.Errorf("field %q: default: %w", f.Name, err)
			}
			wf.Default = dv
		}
		out.Fields = append(out.Fields, wf)
	}
	return out, nil
}

func describeFromWire(r *blobpb.DescribeResponse) (Description, error) {
	d := Description{Name: r.GetName(), Version: r.GetVersion(), Doc: r.GetDoc()}
	for _, v := range r.GetProtocolVersions() {
		d.ProtocolVersions = append(d.ProtocolVersions, int(v))
	}
	for _, wf := range r.GetFields() {
		k, err := kindFromWire(wf.GetKind())
		if err != nil {
			return d, fmt.Errorf("field %q: %w", wf.GetName(), err)
		}
		f := Field{Name: wf.GetName(), Kind: k, Required: wf.GetRequired(), Secret: wf.GetSecret(),
			Doc: wf.GetDoc(), Example: wf.GetExample(), Enum: wf.GetEnum()}
		if wf.Default != nil {
			if f.Default, err = valueFromWire(wf.Default); err != nil {
				return d, fmt.Errorf("field %q: default: %w", f.Name, err)
			}
			if err := checkValue(k, f.Default); err != nil {
				return d, fmt.Errorf("field %q: default: %w", f.Name, err)
			}
		}
		d.Fields = append(d.Fields, f)
	}
	return d, nil
}

// toStatus turns a Store error into a gRPC status that keeps ErrNotFound and context
// errors recognisable on the other side.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, errNotConfigured):
		code = codes.FailedPrecondition
	case errors.Is(err, errInvalid):
		code = codes.InvalidArgument
	}
	return status.Error(code, err.Error())
}

// ErrUnavailable is wrapped by client errors when the plugin process cannot be reached
// (it exited, crashed or was killed).
var ErrUnavailable = errors.New("plugin unavailable")

// fromStatus turns a gRPC status back into an error that wraps ErrNotFound, a context
// error or ErrUnavailable where it should.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.NotFound:
		return &remoteError{msg: msg, is: ErrNotFound}
	case codes.Canceled:
		return &remoteError{msg: msg, is: context.Canceled}
	case codes.DeadlineExceeded:
		return &remoteError{msg: msg, is: context.DeadlineExceeded}
	case codes.Unavailable:
		return &remoteError{msg: "plugin unavailable (exited or crashed?): " + msg, is: ErrUnavailable}
	}
	return &remoteError{msg: msg}
}

type remoteError struct {
	msg string
	is  error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.is }

var (
	errNotConfigured = errors.New("not configured")
	errInvalid       = errors.New("invalid request")
)
