using Coordinator.Grains.Lightning.Bolt11;
using NBitcoin;

namespace Coordinator.Tests.Lightning.Bolt11;

/// <summary>Random invoice requests and keys for the encoder's tests, from a seeded <see cref="Random"/> so a failure repeats.</summary>
internal sealed class TestInvoices(int seed)
{
    private static readonly string[] Alphabet = ["a", "b", "Z", "0", "9", " ", "-", "\"", "\\", "é", "ß", "ナ", "ン", "杯", "☕", "😀", "\n"];

    private readonly Random _random = new(seed);

    public Key NewKey() => new(Bytes(32));

    public string Hex32() => Convert.ToHexStringLower(Bytes(32));

    public Bolt11InvoiceRequest NewRequest()
    {
        var hashed = _random.Next(4) == 0;
        return new Bolt11InvoiceRequest
        {
            Network = Enum.GetValues<Bolt11Network>()[_random.Next(5)],
            AmountMsat = _random.Next(6) switch
            {
                0 => null,
                1 => _random.NextInt64(1, 20_000_000) * 1000,
                2 => _random.NextInt64(1, 1_000_000_000_000),
                3 => _random.NextInt64(1, 21) * 100_000_000_000,
                4 => _random.NextInt64(1, 999) * 100_000_000,
                _ => _random.NextInt64(1, 99_999) * 100,
            },
            Timestamp = DateTimeOffset.FromUnixTimeSeconds(_random.NextInt64(1_000_000_000, (1L << 35) - 1)),
            PaymentHash = Hex32(),
            PaymentSecret = _random.Next(3) == 0 ? null : Hex32(),
            Description = hashed ? null : Description(),
            DescriptionHash = hashed ? Hex32() : null,
            Expiry = _random.Next(5) == 0 ? null : TimeSpan.FromSeconds(_random.Next(1, 10_000_000)),
            MinFinalCltvExpiry = _random.Next(1, 2000),
            IncludePayeeNodeKey = _random.Next(3) == 0,
        };
    }

    /// <summary>Up to 150 characters of at most 4 UTF-8 bytes (within 639 bytes), sometimes long enough to pass 1023 characters of bech32.</summary>
    private string Description() =>
        string.Concat(Enumerable.Range(0, _random.Next(5) == 0 ? _random.Next(100, 151) : _random.Next(0, 41)).Select(_ => Alphabet[_random.Next(Alphabet.Length)]));

    private byte[] Bytes(int count)
    {
        var bytes = new byte[count];
        _random.NextBytes(bytes);
        return bytes;
    }
}
