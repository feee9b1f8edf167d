namespace Coordinator.Grains.Dispatch;

/// <summary>
/// The ids of the dispatcher calls one poll slice makes. A worker grain calls a dispatcher again when a call failed (its
/// activation went away), and a call whose answer was lost may have had a job claimed for it (<c>jobs.poll_id</c>): each
/// call has its own id, so that the claims of the calls that failed can be given back without touching the call that
/// followed them. The ids share the slice's first 12 bytes; the last four number the family (two bytes) and the call to
/// its dispatcher (two bytes), big-endian, so that PostgreSQL, which orders <c>uuid</c> bytewise, finds a range of calls
/// with one range condition.
/// </summary>
public static class PollIds
{
    private const int Largest = ushort.MaxValue;

    /// <summary>The id of the <paramref name="call"/>-th call (from 0) of the slice to the dispatcher of its <paramref name="family"/>-th family.</summary>
    public static Guid Of(Guid slice, int family, int call)
    {
        Span<byte> bytes = stackalloc byte[16];
        slice.TryWriteBytes(bytes, bigEndian: true, out _);
        family = Math.Min(family, Largest);
        call = Math.Min(call, Largest);
        bytes[12] = (byte)(family >> 8);
        bytes[13] = (byte)family;
        bytes[14] = (byte)(call >> 8);
        bytes[15] = (byte)call;
        return new Guid(bytes, bigEndian: true);
    }

    /// <summary>Every call id of a slice, as the first and last of a range.</summary>
    public static (Guid First, Guid Last) All(Guid slice) => (Of(slice, 0, 0), Of(slice, Largest, Largest));

    /// <summary>The ids of calls <paramref name="first"/> to <paramref name="last"/> (inclusive) to one family's dispatcher.</summary>
    public static (Guid First, Guid Last) Calls(Guid slice, int family, int first, int last) => (Of(slice, family, first), Of(slice, family, last));
}
