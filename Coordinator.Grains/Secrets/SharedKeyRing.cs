using System.Security.Cryptography.X509Certificates;
using System.Xml.Linq;
using Coordinator.Grains.Webhooks;
using Dapper;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.XmlEncryption;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Secrets;

/// <summary>
/// The grid's Data Protection key ring: one ring in PostgreSQL shared by every silo, encrypted at rest to the certificate
/// of <see cref="KeyRingOptions"/> when one is configured. Everything the grid protects depends on it: the dashboard's
/// cookies and form tokens, the webhook signing-key copies, the receipt signing keys and the macaroon root keys.
/// </summary>
public static class SharedKeyRing
{
    /// <summary>The log category of the framework's own key manager.</summary>
    internal const string FrameworkKeyManagerCategory = "Microsoft.AspNetCore.DataProtection.KeyManagement.XmlKeyManager";

    public static IServiceCollection AddSharedKeyRing(this IServiceCollection services, IConfiguration configuration)
    {
        var options = configuration.GetSection(KeyRingOptions.Section).Get<KeyRingOptions>() ?? new KeyRingOptions();
        // Loaded now (the framework takes certificate instances); a bad path or password stops the node at KeyRingCheck,
        // with the setting named, rather than here with a stack trace.
        var certificates = new KeyRingCertificates(options);
        services.AddSingleton(certificates);
        services.AddSingleton<KeyRingCheck>();
        var dataProtection = services.AddDataProtection().SetApplicationName("Coordinator");
        // Every node must read what any node protected: the key ring lives in PostgreSQL.
        services.AddOptions<KeyManagementOptions>().Configure<NpgsqlDataSource>((keys, dataSource) => keys.XmlRepository = new PostgresXmlRepository(dataSource));
        if (certificates.Loaded && certificates.Current is { } current)
        {
            dataProtection.ProtectKeysWithCertificate(current);
            // The decryptor named in each encrypted key (EncryptedXmlDecryptor) is activated with this container and finds
            // the private keys of these: the current certificate and the previous ones.
            dataProtection.UnprotectKeysWithAnyCertificate([.. certificates.ForDecryption]);
        }
        else
        {
            if (certificates.Loaded && certificates.ForDecryption.Count > 0) dataProtection.UnprotectKeysWithAnyCertificate([.. certificates.ForDecryption]);
            // KeyRingCheck says once at start-up, with what to do, what the framework would repeat bare at every new key
            // ("No XML encryptor configured"). Log filters go by category, not event: the key manager's other warnings
            // (malformed or doubly revoked keys) go too while the ring is unencrypted; its errors stay.
            services.Configure<LoggerFilterOptions>(filters => filters.Rules.Add(new LoggerFilterRule(null, FrameworkKeyManagerCategory, LogLevel.Error, null)));
        }
        return services;
    }
}

/// <summary>What <see cref="KeyRingCheck"/> found in the key ring.</summary>
/// <param name="Keys">Every key, oldest first.</param>
public sealed record KeyRingStatus(IReadOnlyList<KeyRingEntry> Keys)
{
    public IEnumerable<KeyRingEntry> Unreadable => Keys.Where(k => !k.Readable);

    public IEnumerable<KeyRingEntry> Unencrypted => Keys.Where(k => k.EncryptedTo is null);
}

/// <summary>One key of the ring as stored.</summary>
/// <param name="RowId">The row of data_protection_keys.</param>
/// <param name="KeyId">The key's id, as protected payloads name it.</param>
/// <param name="Created">When the key was made.</param>
/// <param name="Expires">When the key stops protecting new payloads (it still unprotects old ones).</param>
/// <param name="EncryptedTo">The certificate the key is encrypted to (subject and thumbprint), or null if stored unencrypted.</param>
/// <param name="Readable">Whether this node holds what decrypts it.</param>
public sealed record KeyRingEntry(long RowId, Guid KeyId, DateTimeOffset Created, DateTimeOffset Expires, string? EncryptedTo, bool Readable);

/// <summary>
/// Reads the stored key ring before the node serves, so that a node that cannot decrypt the ring stops with a message
/// saying why, instead of failing on its first cookie or, worse, writing a new key that the other silos cannot read.
/// Also re-encrypts, on the operator's word, keys stored unencrypted or encrypted to a previous certificate.
/// </summary>
public sealed partial class KeyRingCheck(KeyRingCertificates certificates, NpgsqlDataSource dataSource,
    IOptions<KeyManagementOptions> keyManagement, IServiceProvider services, IHostEnvironment environment, ILogger<KeyRingCheck> logger)
{
    private static readonly XNamespace DataProtection = "http://schemas.asp.net/2015/03/dataProtection";
    private static readonly XNamespace XmlSignature = "http://www.w3.org/2000/09/xmldsig#";

    /// <summary>
    /// Checks that this node can read every stored key and says once what is unprotected; throws a
    /// <see cref="KeyRingException"/> (a configuration that cannot work) with what to do.
    /// </summary>
    public async Task<KeyRingStatus> VerifyAsync(CancellationToken cancellationToken = default)
    {
        // Loads the certificates: a bad path or password is a KeyRingException here, before anything is protected.
        var current = certificates.Current;
        var status = await ReadAsync(cancellationToken);
        var unreadable = status.Unreadable.ToList();
        if (unreadable.Count > 0)
        {
            var holds = current is null
                ? $"This node has no {KeyRingOptions.Section}:{nameof(KeyRingOptions.CertificatePath)}"
                : $"This node has {Describe(current)}{(certificates.ForDecryption.Count > 1 ? $" and {certificates.ForDecryption.Count - 1} previous certificate(s)" : "")}";
            throw new KeyRingException(
                $"The Data Protection key ring in PostgreSQL (table data_protection_keys) holds {unreadable.Count} key(s) this node cannot decrypt: " +
                string.Join("; ", unreadable.Select(k => $"key {k.KeyId} is encrypted to {k.EncryptedTo}")) + $". {holds}. " +
                $"Give every silo the same {KeyRingOptions.Section}:{nameof(KeyRingOptions.CertificatePath)} (and its password or PEM key), or list the old " +
                $"certificate under {KeyRingOptions.Section}:{nameof(KeyRingOptions.PreviousCertificates)} while rotating (deploy/README.md, \"Shared secrets\"). " +
                "The node does not start: it could not read the dashboard's cookies, the webhook signing keys, the receipt signing keys or the macaroon root keys.");
        }

        if (current is null)
        {
            if (environment.IsDevelopment()) LogUnencryptedDevelopment(logger);
            else LogUnencrypted(logger);
        }
        else
        {
            LogEncrypted(logger, current.Subject, current.Thumbprint);
            var plain = status.Unencrypted.Count();
            if (plain > 0) LogPlainKeysRemain(logger, plain);
        }
        return status;
    }

    /// <summary>Every key of the ring, as stored, with whether this node can decrypt it.</summary>
    public async Task<KeyRingStatus> ReadAsync(CancellationToken cancellationToken = default)
    {
        var thumbprints = certificates.ForDecryption.Select(c => c.Thumbprint).ToHashSet(StringComparer.OrdinalIgnoreCase);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(long Id, string Xml)>(
            new CommandDefinition("SELECT id, xml FROM data_protection_keys ORDER BY id", cancellationToken: cancellationToken));
        var keys = new List<KeyRingEntry>();
        foreach (var (id, xml) in rows)
        {
            var element = XElement.Parse(xml);
            if (element.Name != "key") continue; // revocations hold no secret
            var keyId = (Guid)element.Attribute("id")!;
            var created = (DateTimeOffset)element.Element("creationDate")!;
            var expires = (DateTimeOffset)element.Element("expirationDate")!;
            var secret = element.Descendants(DataProtection + "encryptedSecret").FirstOrDefault();
            if (secret is null)
            {
                keys.Add(new KeyRingEntry(id, keyId, created, expires, null, true));
                continue;
            }
            var decryptor = (string?)secret.Attribute("decryptorType") ?? "";
            var embedded = secret.Descendants(XmlSignature + "X509Certificate").FirstOrDefault()?.Value;
            if (!decryptor.StartsWith(typeof(EncryptedXmlDecryptor).FullName + ",", StringComparison.Ordinal) || embedded is null)
            {
                keys.Add(new KeyRingEntry(id, keyId, created, expires, $"a decryptor this grid does not configure ({decryptor.Split(',')[0]})", false));
                continue;
            }
            using var certificate = X509CertificateLoader.LoadCertificate(Convert.FromBase64String(embedded));
            keys.Add(new KeyRingEntry(id, keyId, created, expires, Describe(certificate), thumbprints.Contains(certificate.Thumbprint)));
        }
        return new KeyRingStatus(keys);
    }

    /// <summary>
    /// Encrypts to the configured certificate, in place, every key that is not encrypted to it: keys stored before
    /// encryption was turned on, and keys encrypted to a previous certificate. Their ids do not change, so everything
    /// they protected stays readable; afterwards the previous certificates are no longer needed. Answers how many keys
    /// it re-encrypted.
    /// </summary>
    public async Task<int> ReencryptAsync(CancellationToken cancellationToken = default)
    {
        if (certificates.Current is not { } current || keyManagement.Value.XmlEncryptor is not { } encryptor)
        {
            throw new KeyRingException($"No {KeyRingOptions.Section}:{nameof(KeyRingOptions.CertificatePath)} is configured: there is nothing to encrypt the keys to.");
        }
        var status = await VerifyAsync(cancellationToken);
        var decryptor = new EncryptedXmlDecryptor(services);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = (await connection.QueryAsync<(long Id, string Xml)>(
            new CommandDefinition("SELECT id, xml FROM data_protection_keys ORDER BY id", cancellationToken: cancellationToken))).ToDictionary(r => r.Id, r => r.Xml);
        var reencrypted = 0;
        foreach (var entry in status.Keys.Where(k => k.EncryptedTo != Describe(current)))
        {
            var xml = rows[entry.RowId];
            var element = XElement.Parse(xml);
            // A key of a previous certificate is decrypted first: back to the secret element the framework marked.
            foreach (var encrypted in element.Descendants(DataProtection + "encryptedSecret").ToList())
            {
                encrypted.ReplaceWith(decryptor.Decrypt(encrypted.Elements().Single()));
            }
            foreach (var secret in element.Descendants().Where(e => (bool?)e.Attribute(DataProtection + "requiresEncryption") == true).ToList())
            {
                // The form the framework writes for a key encrypted at creation.
                var info = encryptor.Encrypt(new XElement(secret));
                secret.ReplaceWith(new XElement(DataProtection + "encryptedSecret",
                    new XAttribute("decryptorType", info.DecryptorType.AssemblyQualifiedName!), info.EncryptedElement));
            }
            // Conditional on the row being as read, so that two operators running this at once encrypt each key once.
            reencrypted += await connection.ExecuteAsync(new CommandDefinition(
                "UPDATE data_protection_keys SET xml = @encryptedXml WHERE id = @id AND xml = @xml",
                new { id = entry.RowId, xml, encryptedXml = element.ToString(SaveOptions.DisableFormatting) }, cancellationToken: cancellationToken));
        }
        return reencrypted;
    }

    private static string Describe(X509Certificate2 certificate) => $"certificate '{certificate.Subject}' (thumbprint {certificate.Thumbprint})";

    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message =
        "The Data Protection key ring in PostgreSQL (table data_protection_keys) is stored unencrypted: anyone who can read the database can forge " +
        "dashboard sessions and read the webhook signing keys, receipt signing keys and macaroon root keys it protects. Set DataProtection:CertificatePath " +
        "(a PKCS#12 file with DataProtection:CertificatePassword, or a PEM certificate with DataProtection:CertificateKeyPath), the same on every silo; " +
        "see deploy/README.md, \"Shared secrets\".")]
    private static partial void LogUnencrypted(ILogger logger);

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message =
        "Development: the Data Protection key ring in PostgreSQL is stored unencrypted. In production set DataProtection:CertificatePath " +
        "(deploy/README.md, \"Shared secrets\").")]
    private static partial void LogUnencryptedDevelopment(ILogger logger);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "New Data Protection keys are encrypted to certificate '{Subject}' (thumbprint {Thumbprint}).")]
    private static partial void LogEncrypted(ILogger logger, string subject, string thumbprint);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message =
        "{Count} Data Protection key(s) made before the key ring was encrypted are still stored unencrypted; they stay in use for what they " +
        "protected. Encrypt them in place with: Coordinator.Silo data-protection reencrypt (deploy/README.md, \"Shared secrets\").")]
    private static partial void LogPlainKeysRemain(ILogger logger, int count);
}
