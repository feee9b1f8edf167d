using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Coordinator.Api.Operator;

/// <summary>
/// Operator authentication and the operator surfaces under <c>/operator</c>, bound from the <c>Operator</c> section.
/// Only hashes of operator keys are configured; with none, every operator surface answers 404 (off, never open).
/// </summary>
public sealed class OperatorOptions
{
    public const string Section = "Operator";

    /// <summary>
    /// The operator keys, as <c>sha256:&lt;64 hex digits&gt;</c> of each key (<c>Coordinator.Silo operator-key new</c>
    /// prints a key and its line): a list (<c>Operator:KeyHashes:0</c>, <c>:1</c> …) or one comma-separated string
    /// (<c>Operator__KeyHashes=sha256:…,sha256:…</c>). Default: none, and the operator surfaces are off.
    /// </summary>
    public IReadOnlyList<string> KeyHashes { get; set; } = [];

    /// <summary>How long a browser's operator sign-in lasts. Default: 12 h.</summary>
    public TimeSpan SessionLifetime { get; set; } = TimeSpan.FromHours(12);

    /// <summary>
    /// Failed operator authentications a client address may make per minute (clock-aligned windows, shared across
    /// silos like the rate limits: each node allows its share); past it, every operator request from that address answers 429 until the minute ends. Default: 10.
    /// </summary>
    public int FailedAttemptsPerMinute { get; set; } = 10;

    /// <summary>
    /// Host the Orleans Dashboard at <c>/operator/dashboard/</c> when operator keys are configured. It adds a grain-call
    /// filter (its profiler) to every grain call of the silo. Default: true.
    /// </summary>
    public bool Dashboard { get; set; } = true;

    /// <summary>The configured hashes, however they were written (a list, or one comma-separated string).</summary>
    public static IReadOnlyList<string> ReadKeyHashes(IConfiguration configuration)
    {
        var section = configuration.GetSection(Section).GetSection(nameof(KeyHashes));
        // A section with children can still answer "" for its own value (seen under WebApplicationFactory): only a
        // non-blank value is the one-string form.
        var entries = !string.IsNullOrWhiteSpace(section.Value)
            ? section.Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            : section.GetChildren().Select(child => child.Value?.Trim()).OfType<string>().Where(value => value.Length > 0);
        return [.. entries];
    }

    /// <summary>Whether this silo hosts the Orleans Dashboard: operator keys are configured and the dashboard is not turned off.</summary>
    public static bool DashboardOn(IConfiguration configuration) =>
        ReadKeyHashes(configuration).Count > 0 && configuration.GetValue<bool?>($"{Section}:{nameof(Dashboard)}") != false;
}

/// <summary>Operator keys: made by <c>Coordinator.Silo operator-key new</c>, configured as hashes only.</summary>
public static partial class OperatorKeys
{
    public const string Prefix = "op_";

    public const string HashPrefix = "sha256:";

    /// <summary>A new key: <c>op_</c> followed by 256 random bits in base64url (43 characters).</summary>
    public static string Generate()
    {
        Span<byte> secret = stackalloc byte[32];
        RandomNumberGenerator.Fill(secret);
        return Prefix + Convert.ToBase64String(secret).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    /// <summary>The SHA-256 of the key's UTF-8 bytes, as account keys are hashed.</summary>
    public static byte[] Hash(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));

    /// <summary>The configuration line of a key: <c>sha256:</c> and its hash in lowercase hex (what <c>sha256sum</c> prints).</summary>
    public static string HashLine(string key) => HashPrefix + Convert.ToHexStringLower(Hash(key));

    /// <summary>Whether a configured entry is a hash line.</summary>
    public static bool IsHashLine(string entry) => HashLinePattern().IsMatch(entry);

    /// <summary>The hash a configured line holds (see <see cref="IsHashLine"/>).</summary>
    public static byte[] ParseHashLine(string entry) => Convert.FromHexString(entry.AsSpan(HashPrefix.Length));

    [GeneratedRegex("^sha256:[0-9a-fA-F]{64}$")]
    private static partial Regex HashLinePattern();
}
