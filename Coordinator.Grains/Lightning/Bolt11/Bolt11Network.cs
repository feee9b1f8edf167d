namespace Coordinator.Grains.Lightning.Bolt11;

/// <summary>
/// The chain an invoice asks to be paid on, named by the BIP-0173 currency prefix that follows <c>ln</c> in its
/// human-readable part. A refund must go to an invoice of the network the node pays on: a testnet invoice cannot be
/// paid from a mainnet node, and paying the wrong one would lose the refund.
/// </summary>
public enum Bolt11Network
{
    /// <summary>Bitcoin mainnet: <c>lnbc</c>.</summary>
    Bitcoin,

    /// <summary>Bitcoin testnet: <c>lntb</c>.</summary>
    Testnet,

    /// <summary>Bitcoin signet: <c>lntbs</c>.</summary>
    Signet,

    /// <summary>Bitcoin regtest: <c>lnbcrt</c> (what a local LNbits on a regtest node issues).</summary>
    Regtest,

    /// <summary>btcd's simnet: <c>lnsb</c>.</summary>
    Simnet,
}

/// <summary>The currency prefixes of <see cref="Bolt11Network"/>.</summary>
public static class Bolt11Networks
{
    /// <summary>The currency prefix of a network, without <c>ln</c>: <c>bc</c>, <c>tb</c>, <c>tbs</c>, <c>bcrt</c> or <c>sb</c>.</summary>
    public static string Prefix(this Bolt11Network network) => network switch
    {
        Bolt11Network.Bitcoin => "bc",
        Bolt11Network.Testnet => "tb",
        Bolt11Network.Signet => "tbs",
        Bolt11Network.Regtest => "bcrt",
        Bolt11Network.Simnet => "sb",
        _ => throw new ArgumentOutOfRangeException(nameof(network), network, "not a BOLT11 network"),
    };

    /// <summary>The network a currency prefix (without <c>ln</c>, lower case) names.</summary>
    public static bool TryParse(ReadOnlySpan<char> prefix, out Bolt11Network network)
    {
        foreach (var candidate in Enum.GetValues<Bolt11Network>())
        {
            if (prefix.SequenceEqual(candidate.Prefix()))
            {
                network = candidate;
                return true;
            }
        }
        network = default;
        return false;
    }
}
