/** A license as the stand-in keeps it (the real extension's LicenseInfo has the same fields). */
export interface LicenseInfo {
    id: string;
    key: string;
    createdAt: Date;
    expiresAt: Date;
    contentPermissions: string[];
}
