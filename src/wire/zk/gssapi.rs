//! ZooKeeper's SASL authentication with the GSSAPI mechanism (Kerberos V5, RFC 4752): the
//! server side of what ZooKeeper 3.8 does with a JAAS `Server` section holding a
//! `Krb5LoginModule` (useKeyTab, storeKey): the JDK's GSSAPI SaslServer (GssKrb5Server).
//!
//! The Kerberos work (decrypting the client's AP-REQ with the service key from the keytab,
//! the AP-REP, wrap and unwrap) is done by the system's MIT GSS-API library, loaded with
//! `dlopen` when `--zk-sasl-keytab` is given: a server that does not serve GSSAPI neither
//! needs nor loads Kerberos (Debian package libgssapi-krb5-2). Writing Kerberos here would
//! mean our own AES-CTS, key derivation and ASN.1 for one mechanism that every host that
//! runs a KDC already has a vetted implementation of.
//!
//! The exchange, as a client (kazoo with pure-sasl and pykerberos, or ZooKeeper's Java client)
//! runs it:
//!
//! 1. the client sends its GSS initial token (an AP-REQ for `zookeeper/<host>`); the server
//!    accepts it with any key of the keytab and answers the GSS output token (the AP-REP when
//!    the client asked for mutual authentication), repeated while GSS wants more;
//! 2. once the context is established the client sends an empty token, and the server offers
//!    its security layers: a wrapped 4-byte token, `[layers][max buffer, 3 bytes]` with layer
//!    1 = no protection only (ZooKeeper's qop is "auth") and 65536 as the buffer, as the JDK;
//! 3. the client answers a wrapped `[chosen layer][max buffer][authorization id]`; the layer
//!    must be 1. The exchange succeeds with a null token and the connection gains the identity
//!    ("sasl", client principal), e.g. `client@KAZOOTEST.ORG`: ZooKeeper's callback handler
//!    authorizes whatever authorization id was sent and names the connection after the
//!    authenticated principal (short name + host + realm, which with the default rules and
//!    without kerberos.removeHostFromPrincipal/removeRealmFromPrincipal is the principal).
//!
//! Any failure ends the exchange; the server answers AuthFailed and closes the connection.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::OnceLock;

use super::sasl::{SaslError, Step};

type Major = u32;
type GssCtx = *mut c_void;
type GssName = *mut c_void;
type GssOid = *mut c_void;

/// `gss_buffer_desc`.
#[repr(C)]
struct Buffer {
    length: usize,
    value: *mut c_void,
}

impl Buffer {
    fn empty() -> Buffer {
        Buffer { length: 0, value: std::ptr::null_mut() }
    }

    /// A descriptor of `bytes` for GSS to read (never written through).
    fn of(bytes: &[u8]) -> Buffer {
        Buffer { length: bytes.len(), value: bytes.as_ptr() as *mut c_void }
    }
}

const GSS_S_COMPLETE: Major = 0;
const GSS_S_CONTINUE_NEEDED: Major = 1;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;

fn is_error(major: Major) -> bool {
    major & 0xffff_0000 != 0
}

type AcceptFn = unsafe extern "C" fn(
    *mut u32,
    *mut GssCtx,
    *mut c_void,
    *mut Buffer,
    *mut c_void,
    *mut GssName,
    *mut GssOid,
    *mut Buffer,
    *mut u32,
    *mut u32,
    *mut *mut c_void,
) -> Major;
type DisplayNameFn = unsafe extern "C" fn(*mut u32, GssName, *mut Buffer, *mut GssOid) -> Major;
type WrapFn = unsafe extern "C" fn(*mut u32, GssCtx, c_int, u32, *mut Buffer, *mut c_int, *mut Buffer) -> Major;
type UnwrapFn = unsafe extern "C" fn(*mut u32, GssCtx, *mut Buffer, *mut Buffer, *mut c_int, *mut u32) -> Major;
type ReleaseBufferFn = unsafe extern "C" fn(*mut u32, *mut Buffer) -> Major;
type ReleaseNameFn = unsafe extern "C" fn(*mut u32, *mut GssName) -> Major;
type DeleteContextFn = unsafe extern "C" fn(*mut u32, *mut GssCtx, *mut Buffer) -> Major;
type DisplayStatusFn = unsafe extern "C" fn(*mut u32, u32, c_int, GssOid, *mut u32, *mut Buffer) -> Major;
type RegisterAcceptorFn = unsafe extern "C" fn(*const c_char) -> Major;

/// The GSS-API entry points used here, from the library loaded by [`init`].
struct Lib {
    accept: AcceptFn,
    display_name: DisplayNameFn,
    wrap: WrapFn,
    unwrap: UnwrapFn,
    release_buffer: ReleaseBufferFn,
    release_name: ReleaseNameFn,
    delete_context: DeleteContextFn,
    display_status: DisplayStatusFn,
}

static LIB: OnceLock<Lib> = OnceLock::new();

/// The library's soname in Debian's libgssapi-krb5-2.
const LIBRARY: &str = "libgssapi_krb5.so.2";

/// Loads the GSS-API library and makes `keytab` the acceptor's key table (once per process;
/// a second call with another keytab is refused, since the setting is process-wide).
pub fn init(keytab: &Path) -> Result<(), String> {
    if !keytab.is_file() {
        return Err(format!("--zk-sasl-keytab {}: no such file", keytab.display()));
    }
    static KEYTAB: OnceLock<std::path::PathBuf> = OnceLock::new();
    let first = KEYTAB.get_or_init(|| keytab.to_path_buf());
    if first != keytab {
        return Err(format!("GSSAPI already uses the keytab {}", first.display()));
    }
    let lib = load()?;
    let path = CString::new(keytab.as_os_str().as_encoded_bytes()).map_err(|_| "keytab path has a NUL byte")?;
    let register: RegisterAcceptorFn = symbol(lib.0, "krb5_gss_register_acceptor_identity")?;
    // SAFETY: the function copies the NUL-terminated path it is given.
    let major = unsafe { register(path.as_ptr()) };
    if major != GSS_S_COMPLETE {
        return Err(format!("{LIBRARY}: krb5_gss_register_acceptor_identity failed (0x{major:x})"));
    }
    let _ = LIB.set(lib.1);
    Ok(())
}

/// Whether [`init`] succeeded: GSSAPI exchanges can be served.
pub fn available() -> bool {
    LIB.get().is_some()
}

fn load() -> Result<(*mut c_void, Lib), String> {
    let name = CString::new(LIBRARY).map_err(|_| format!("{LIBRARY}: NUL in the library name"))?;
    // SAFETY: dlopen with a NUL-terminated name; the handle is never closed, so the function
    // pointers taken from it stay valid for the life of the process.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("GSSAPI needs {LIBRARY} (Debian package libgssapi-krb5-2): {}", dl_error()));
    }
    let lib = Lib {
        accept: symbol(handle, "gss_accept_sec_context")?,
        display_name: symbol(handle, "gss_display_name")?,
        wrap: symbol(handle, "gss_wrap")?,
        unwrap: symbol(handle, "gss_unwrap")?,
        release_buffer: symbol(handle, "gss_release_buffer")?,
        release_name: symbol(handle, "gss_release_name")?,
        delete_context: symbol(handle, "gss_delete_sec_context")?,
        display_status: symbol(handle, "gss_display_status")?,
    };
    Ok((handle, lib))
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message owned by the loader.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        return "unknown error".into();
    }
    // SAFETY: non-null, NUL-terminated (see above).
    unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
}

/// A function pointer of type `F` for `name` in the library.
fn symbol<F: Copy>(handle: *mut c_void, name: &str) -> Result<F, String> {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>(), "F must be a function pointer");
    let cname = CString::new(name).map_err(|_| format!("{name}: NUL in a symbol name"))?;
    // SAFETY: a valid handle from dlopen and a NUL-terminated name.
    let p = unsafe { libc::dlsym(handle, cname.as_ptr()) };
    if p.is_null() {
        return Err(format!("{LIBRARY} has no {name}: {}", dl_error()));
    }
    // SAFETY: F is the C signature of `name` as the GSS-API (RFC 2744) and MIT declare it,
    // and a function pointer has the size of a data pointer on the platforms we build for.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

/// Copies a buffer GSS allocated and releases it.
fn take(lib: &Lib, buf: &mut Buffer) -> Vec<u8> {
    let out = if buf.value.is_null() || buf.length == 0 {
        Vec::new()
    } else {
        // SAFETY: GSS filled `length` bytes at `value`.
        unsafe { std::slice::from_raw_parts(buf.value as *const u8, buf.length) }.to_vec()
    };
    let mut minor = 0;
    // SAFETY: a buffer GSS allocated (or an empty one, which it accepts).
    unsafe { (lib.release_buffer)(&mut minor, buf) };
    out
}

/// GSS's own words for a failed call: "<major text>: <mechanism text>".
fn status_text(lib: &Lib, major: Major, minor: u32) -> String {
    let mut parts = Vec::new();
    for (code, kind) in [(major, GSS_C_GSS_CODE), (minor, GSS_C_MECH_CODE)] {
        if kind == GSS_C_MECH_CODE && code == 0 {
            continue;
        }
        let mut ctx = 0u32;
        // Bounded: a status has a few messages at most.
        for _ in 0..8 {
            let mut m = 0;
            let mut buf = Buffer::empty();
            // SAFETY: out-parameters are valid; a null mechanism OID means the default.
            let r = unsafe { (lib.display_status)(&mut m, code, kind, std::ptr::null_mut(), &mut ctx, &mut buf) };
            if is_error(r) {
                break;
            }
            parts.push(String::from_utf8_lossy(&take(lib, &mut buf)).into_owned());
            if ctx == 0 {
                break;
            }
        }
    }
    parts.join(": ")
}

fn fail<T>(why: impl Into<String>) -> Result<T, SaslError> {
    Err(SaslError(format!("GSSAPI: {}", why.into())))
}

/// The Kerberos V5 mechanism, 1.2.840.113554.1.2.2, as DER (tag, length, value).
const KRB5_OID_DER: [u8; 11] = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];

/// Whether `token` is a GSS initial context token (RFC 2743 3.1: [APPLICATION 0] holding the
/// mechanism OID first) for Kerberos V5. The JDK's GSSAPI server accepts only that mechanism;
/// MIT's library, asked for no particular one, would also take SPNEGO (and answer an empty
/// token with a SPNEGO hint), so anything else is refused before it gets there.
fn is_krb5_initial_token(token: &[u8]) -> bool {
    let Some((&0x60, rest)) = token.split_first() else { return false };
    let Some((&len0, rest)) = rest.split_first() else { return false };
    // DER length: short form, or long form with 1-4 length bytes.
    let (len, rest) = match len0 {
        n if n < 0x80 => (n as usize, rest),
        n @ 0x81..=0x84 => {
            let k = (n - 0x80) as usize;
            if rest.len() < k {
                return false;
            }
            (rest[..k].iter().fold(0usize, |acc, b| acc << 8 | *b as usize), &rest[k..])
        }
        _ => return false,
    };
    len == rest.len() && rest.starts_with(&KRB5_OID_DER)
}

enum Stage {
    Accepting,
    Established,
    Offered,
    Done,
}

/// The security layer ZooKeeper's server offers and accepts: 1 = no protection (qop "auth").
const LAYER_NONE: u8 = 1;
/// The receive buffer the JDK's server announces.
const MAX_BUFFER: u32 = 65536;

/// The server side of one connection's GSSAPI exchange.
pub struct GssapiServer {
    ctx: GssCtx,
    stage: Stage,
    principal: String,
}

// SAFETY: the context handle is owned by this value and used by one task at a time (the
// connection's reader); MIT's GSS-API allows a context to move between threads.
unsafe impl Send for GssapiServer {}

impl GssapiServer {
    /// A new exchange; [`init`] must have succeeded (the caller checks [`available`]).
    pub fn new() -> GssapiServer {
        GssapiServer { ctx: std::ptr::null_mut(), stage: Stage::Accepting, principal: String::new() }
    }

    /// Takes the client's next token. An Err ends the exchange (every later token fails too).
    pub fn evaluate(&mut self, token: &[u8]) -> Result<Step, SaslError> {
        let Some(lib) = LIB.get() else { return fail("GSSAPI is not configured") };
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Accepting => self.accept(lib, token),
            Stage::Established => {
                // The client's empty answer to the last context token: offer the layers.
                let offer = [LAYER_NONE, (MAX_BUFFER >> 16) as u8, (MAX_BUFFER >> 8) as u8, MAX_BUFFER as u8];
                let wrapped = self.wrap(lib, &offer)?;
                self.stage = Stage::Offered;
                Ok(Step::Challenge(wrapped))
            }
            Stage::Offered => {
                let plain = self.unwrap(lib, token)?;
                if plain.len() < 4 {
                    return fail("the client's security layer answer is shorter than 4 bytes");
                }
                if plain[0] != LAYER_NONE {
                    return fail(format!("the client chose security layer {}, only 1 (none) is offered", plain[0]));
                }
                Ok(Step::Complete { authorization_id: std::mem::take(&mut self.principal) })
            }
            Stage::Done => fail("the exchange is already over"),
        }
    }

    fn accept(&mut self, lib: &Lib, token: &[u8]) -> Result<Step, SaslError> {
        if self.ctx.is_null() && !is_krb5_initial_token(token) {
            return fail("the first token is not a Kerberos V5 initial context token");
        }
        let mut minor = 0;
        let mut input = Buffer::of(token);
        let mut output = Buffer::empty();
        let mut name: GssName = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; null acceptor credentials mean "any key
        // of the registered keytab", null channel bindings, mechanism, flags, time and
        // delegated credentials mean "not wanted". GSS reads `input` only.
        let major = unsafe {
            (lib.accept)(
                &mut minor,
                &mut self.ctx,
                std::ptr::null_mut(),
                &mut input,
                std::ptr::null_mut(),
                &mut name,
                std::ptr::null_mut(),
                &mut output,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        let out = take(lib, &mut output);
        if is_error(major) {
            return fail(format!("GSS accept: {}", status_text(lib, major, minor)));
        }
        match major & 0xffff {
            GSS_S_CONTINUE_NEEDED => {
                self.stage = Stage::Accepting;
                Ok(Step::Challenge(out))
            }
            GSS_S_COMPLETE => {
                let principal = self.display(lib, name);
                let mut m = 0;
                // SAFETY: a name GSS returned for this call (or null, which it tolerates).
                unsafe { (lib.release_name)(&mut m, &mut name) };
                self.principal = principal?;
                self.stage = Stage::Established;
                Ok(Step::Challenge(out))
            }
            other => fail(format!("GSS accept: unexpected status 0x{other:x}")),
        }
    }

    fn display(&self, lib: &Lib, name: GssName) -> Result<String, SaslError> {
        if name.is_null() {
            return fail("GSS accept named no client principal");
        }
        let (mut minor, mut buf) = (0, Buffer::empty());
        // SAFETY: a valid name; the type out-parameter is optional.
        let major = unsafe { (lib.display_name)(&mut minor, name, &mut buf, std::ptr::null_mut()) };
        if is_error(major) {
            return fail(format!("GSS display name: {}", status_text(lib, major, minor)));
        }
        String::from_utf8(take(lib, &mut buf)).map_err(|_| SaslError("the client principal is not UTF-8".into()))
    }

    fn wrap(&self, lib: &Lib, plain: &[u8]) -> Result<Vec<u8>, SaslError> {
        let (mut minor, mut input, mut output, mut conf) = (0, Buffer::of(plain), Buffer::empty(), 0);
        // SAFETY: an established context; integrity only (conf_req 0), default qop.
        let major = unsafe { (lib.wrap)(&mut minor, self.ctx, 0, 0, &mut input, &mut conf, &mut output) };
        let out = take(lib, &mut output);
        if is_error(major) {
            return fail(format!("GSS wrap: {}", status_text(lib, major, minor)));
        }
        Ok(out)
    }

    fn unwrap(&self, lib: &Lib, token: &[u8]) -> Result<Vec<u8>, SaslError> {
        let (mut minor, mut input, mut output, mut conf, mut qop) = (0, Buffer::of(token), Buffer::empty(), 0, 0);
        // SAFETY: an established context; GSS reads `input` and allocates `output`.
        let major = unsafe { (lib.unwrap)(&mut minor, self.ctx, &mut input, &mut output, &mut conf, &mut qop) };
        let out = take(lib, &mut output);
        if is_error(major) {
            return fail(format!("GSS unwrap: {}", status_text(lib, major, minor)));
        }
        Ok(out)
    }
}

impl Default for GssapiServer {
    fn default() -> Self {
        GssapiServer::new()
    }
}

impl Drop for GssapiServer {
    fn drop(&mut self) {
        if self.ctx.is_null() {
            return;
        }
        if let Some(lib) = LIB.get() {
            let mut minor = 0;
            // SAFETY: a context this value owns; no output token wanted.
            unsafe { (lib.delete_context)(&mut minor, &mut self.ctx, std::ptr::null_mut()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kerberos_initial_tokens_are_accepted() {
        let mut krb5 = vec![0x60, 13];
        krb5.extend_from_slice(&KRB5_OID_DER);
        krb5.extend_from_slice(&[0x01, 0x00]);
        assert!(is_krb5_initial_token(&krb5));
        let mut long = vec![0x60, 0x82, 0x01, 0x0b];
        long.extend_from_slice(&KRB5_OID_DER);
        long.resize(4 + 0x10b, 0);
        assert!(is_krb5_initial_token(&long));
        // SPNEGO (1.3.6.1.5.5.2), empty, truncated, a length that does not match.
        let spnego = [0x60, 8, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
        for bad in [&spnego[..], &[], &[0x60], &krb5[..8], &[0x60, 0x85, 0, 0, 0, 0, 0]] {
            assert!(!is_krb5_initial_token(bad), "{bad:?}");
        }
        let mut wrong_len = krb5.clone();
        wrong_len[1] += 1;
        assert!(!is_krb5_initial_token(&wrong_len));
    }

    #[test]
    fn a_missing_keytab_is_a_clear_error() {
        let e = init(Path::new("/nonexistent/server.keytab")).unwrap_err();
        assert!(e.contains("no such file"), "{e}");
    }

    #[test]
    fn without_init_an_exchange_fails_instead_of_crashing() {
        // No test loads the library (a keytab needs a KDC): LIB stays unset here.
        let mut s = GssapiServer::new();
        assert!(s.evaluate(b"\x60\x00").is_err());
        assert!(s.evaluate(b"").is_err(), "a failed exchange stays failed");
    }
}
