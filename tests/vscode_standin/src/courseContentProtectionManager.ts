// The stand-in's license store: pasted keys, asked of the provider, kept in global state. Its method names
// are the real extension's, so that the kit's patch has the same places to edit.
import * as vscode from 'vscode';
import { CourseContentProviderClient } from './courseContentProviderClient';
import { LicenseInfo } from './license/types';

export class CourseContentProtectionManager {
    private validLicenses = new Map<string, LicenseInfo>();
    private courseContentProvider: CourseContentProviderClient;

    constructor(private readonly context: vscode.ExtensionContext) {
        this.courseContentProvider = new CourseContentProviderClient(context);
        for (const license of this.context.globalState.get<LicenseInfo[]>('validLicenses', [])) {
            this.validLicenses.set(license.id, license);
        }
    }

    /**
     * Keep a license the provider (or, unreachable, the local check) accepts.
     * @returns whether it was kept
     */
    public async addLicense(licenseKey: string): Promise<boolean> {
        try {
            const verificationResult = await this.courseContentProvider.verifyLicense(licenseKey);
            if (verificationResult.valid) {
                const licenseData = verificationResult.data;
                const licenseInfo: LicenseInfo = {
                    id: licenseData.id,
                    key: licenseKey,
                    createdAt: new Date(licenseData.created_at),
                    expiresAt: new Date(licenseData.expires_at),
                    contentPermissions: licenseData.content_permissions || ['all_chapters']
                };
                this.validLicenses.set(licenseInfo.id, licenseInfo);
                this.saveLicenses();
                return true;
            } else {
                const licenseInfo = await this.verifyLicenseLocally(licenseKey);
                if (licenseInfo) {
                    this.validLicenses.set(licenseInfo.id, licenseInfo);
                    this.saveLicenses();
                    return true;
                }
            }
        } catch (error) {
            const licenseInfo = await this.verifyLicenseLocally(licenseKey);
            if (licenseInfo) {
                this.validLicenses.set(licenseInfo.id, licenseInfo);
                this.saveLicenses();
                return true;
            }
        }
        return false;
    }

    /**
     * Forget a license.
     */
    public removeLicense(licenseId: string): void {
        this.validLicenses.delete(licenseId);
        this.saveLicenses();
    }

    public getValidLicenses(): LicenseInfo[] {
        return Array.from(this.validLicenses.values());
    }

    /** The stand-in's own offline check: a key of two parts, nothing more (the patch replaces it). */
    private async verifyLicenseLocally(licenseKey: string): Promise<LicenseInfo | null> {
        const parts = licenseKey.split('|');
        if (parts.length !== 2) {
            return null;
        }
        return { id: `local-${parts[0].length}`, key: licenseKey, createdAt: new Date(), expiresAt: new Date(), contentPermissions: [] };
    }

    private saveLicenses(): void {
        void this.context.globalState.update('validLicenses', Array.from(this.validLicenses.values()));
    }
}
