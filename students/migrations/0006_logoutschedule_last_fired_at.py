from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('students', '0005_per_user_zones'),
    ]

    operations = [
        migrations.AddField(
            model_name='logoutschedule',
            name='last_fired_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
