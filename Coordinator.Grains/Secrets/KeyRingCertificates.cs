using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Coordinator.Grains.Secrets;

/// <summary>A key ring setting that cannot work: the message says which setting and what to do.</summary>
public sealed class KeyRingException(string message) : Exception(message);

/// <summary>
/// The certificates of <see cref="KeyRingOptions"/>, loaded once: the one new keys are encrypted to, and every one
/// accepted for decryption. A missing file, a wrong password or a certificate without its RSA private key is a
/// <see cref="KeyRingException"/> naming the setting.
/// </summary>
public sealed class KeyRingCertificates
{
    private readonly X509Certificate2? _current;
    private readonly IReadOnlyList<X509Certificate2> _forDecryption = [];
    private readonly KeyRingException? _error;

    /// <summary>Loads the certificates now; a setting that cannot work is kept, and thrown on first use.</summary>
    public KeyRingCertificates(KeyRingOptions options)
    {
        try
        {
            (_current, _forDecryption) = Load(options);
        }
        catch (KeyRingException exception)
        {
            _error = exception;
        }
    }

    /// <summary>The certificate new keys are encrypted to; null when the key ring is not encrypted.</summary>
    public X509Certificate2? Current => _error is null ? _current : throw _error;

    /// <summary>The current certificate and the previous ones, all accepted for decryption.</summary>
    public IReadOnlyList<X509Certificate2> ForDecryption => _error is null ? _forDecryption : throw _error;

    /// <summary>Whether the settings loaded: when not, the node must not protect anything (<see cref="KeyRingCheck"/> stops it).</summary>
    internal bool Loaded => _error is null;

    private static (X509Certificate2?, IReadOnlyList<X509Certificate2>) Load(KeyRingOptions options)
    {
        var all = new List<X509Certificate2>();
        X509Certificate2? current = null;
        if (options.Encrypted)
        {
            current = LoadOne($"{KeyRingOptions.Section}:{nameof(KeyRingOptions.CertificatePath)}", options.CertificatePath!, options.CertificatePassword, options.CertificateKeyPath);
            all.Add(current);
        }
        for (var i = 0; i < options.PreviousCertificates.Count; i++)
        {
            var previous = options.PreviousCertificates[i];
            var setting = $"{KeyRingOptions.Section}:{nameof(KeyRingOptions.PreviousCertificates)}:{i}:{nameof(KeyRingCertificate.Path)}";
            if (string.IsNullOrWhiteSpace(previous.Path)) throw new KeyRingException($"{setting} is empty: name a PKCS#12 file, or a PEM certificate with its KeyPath.");
            all.Add(LoadOne(setting, previous.Path, previous.Password, previous.KeyPath));
        }
        return (current, all);
    }

    /// <summary>Loads a PKCS#12 file, or a PEM certificate and key when <paramref name="keyPath"/> is set.</summary>
    public static X509Certificate2 LoadOne(string setting, string path, string? password, string? keyPath)
    {
        if (!File.Exists(path)) throw new KeyRingException($"{setting} '{path}' does not exist (or this process may not read it).");
        if (!string.IsNullOrWhiteSpace(keyPath) && !File.Exists(keyPath)) throw new KeyRingException($"The PEM key of {setting}, '{keyPath}', does not exist (or this process may not read it).");
        X509Certificate2 certificate;
        try
        {
            certificate = string.IsNullOrWhiteSpace(keyPath)
                ? X509CertificateLoader.LoadPkcs12FromFile(path, password, X509KeyStorageFlags.EphemeralKeySet)
                : X509Certificate2.CreateFromPemFile(path, keyPath);
        }
        catch (CryptographicException exception)
        {
            throw new KeyRingException(
                $"{setting} '{path}' could not be read ({exception.Message}). A PKCS#12 file needs its password (the Password setting beside it); " +
                "a PEM certificate needs its private key file (the KeyPath setting beside it).");
        }
        if (!certificate.HasPrivateKey || certificate.GetRSAPrivateKey() is not { } rsa)
        {
            certificate.Dispose();
            throw new KeyRingException($"{setting} '{path}' has no RSA private key: Data Protection encrypts keys to an RSA certificate and needs its private key to decrypt them.");
        }
        rsa.Dispose();
        return certificate;
    }
}
