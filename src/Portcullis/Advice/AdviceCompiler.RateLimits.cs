using Portcullis.Configuration;

namespace Portcullis.Advice;

internal static partial class AdviceCompiler
{
    static partial void ValidateRateLimits(CompileContext context, AdviceRateLimitOptions options, ref bool ok)
    {
        const string prefix = Section + ".rateLimits.";
        var valid = true;
        void Error(string key, string message, string hint)
        {
            context.Error(prefix + key, message, hint);
            valid = false;
        }

        if (!(options.TargetRefusalShare is >= 0 and <= 0.1))
        {
            Error("targetRefusalShare", $"targetRefusalShare must be between 0 and 0.1 (it is {options.TargetRefusalShare})", "a share of requests, e.g. targetRefusalShare: 0.001 (0.1 %)");
        }

        if (options.MinRequests < 1) Error("minRequests", $"minRequests must be at least 1 (it is {options.MinRequests})", "e.g. minRequests: 100");
        if (options.ConfidentRequests < options.MinRequests)
        {
            Error("confidentRequests", $"confidentRequests ({options.ConfidentRequests}) must be at least minRequests ({options.MinRequests})", "e.g. confidentRequests: 10000");
        }

        if (!(options.TooLooseUse is > 0 and < 1)) Error("tooLooseUse", $"tooLooseUse must be above 0 and below 1 (it is {options.TooLooseUse})", "e.g. tooLooseUse: 0.1");
        if (!(options.TooTightShare is > 0 and <= 1)) Error("tooTightShare", $"tooTightShare must be above 0 and at most 1 (it is {options.TooTightShare})", "e.g. tooTightShare: 0.05");
        if (!(options.KeyAbsentShare is > 0 and <= 1)) Error("keyAbsentShare", $"keyAbsentShare must be above 0 and at most 1 (it is {options.KeyAbsentShare})", "e.g. keyAbsentShare: 0.99");
        if (!valid) ok = false;
    }
}
