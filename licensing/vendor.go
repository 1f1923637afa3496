package licensing

// vendorKey is the vendor's public key (base64), set when a release is built:
//
//	go build -ldflags "-X github.com/udmg/gateway/licensing.vendorKey=BASE64"
//
// A build without it accepts no license file and runs as an evaluation.
var vendorKey string

func init() {
	if vendorKey == "" {
		return
	}
	k, err := ParsePublicKey([]byte(vendorKey))
	if err != nil {
		panic("licensing: the vendor key built into this binary is invalid: " + err.Error())
	}
	VendorKey = k
}
